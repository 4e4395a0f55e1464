"""Background jobs of the daemon (apscheduler): re-indexing, and learning (feedback into
examples, then re-calibrating the gates).

The jobs are plain functions (``knowledge.jobs.reindex``, ``bot.app.learning.learn``);
apscheduler's asyncio scheduler runs such functions in a worker thread, so a build never blocks
the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.learning import learn
from bot.services import Services
from knowledge.jobs import reindex

log = logging.getLogger(__name__)


class Jobs:
    """One apscheduler scheduler for all the daemon's jobs, started and stopped with the bot."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        """Schedule the jobs bot.yaml asks for: re-indexing (unless knowledge.reindex is 0) and
        learning from feedback and re-calibrating the rejection gates (when a pipeline uses
        them)."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        config = self.services.config
        kb = self.services.knowledge
        minutes = config.knowledge.reindex.interval_minutes
        if kb is not None and minutes > 0:
            scheduler.add_job(
                reindex,
                IntervalTrigger(minutes=minutes),
                args=[kb, self.services.clock],
                id="knowledge-reindex",
                name="re-index the knowledge base",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(timedelta(minutes=minutes).total_seconds()),
            )
            log.info("knowledge base re-index scheduled every %g minutes", minutes)
        gates, database = self.services.gates, self.services.database
        if gates is not None and database is not None:
            scheduler.add_job(
                learn,
                IntervalTrigger(minutes=config.rejection.check_minutes),
                args=[database, gates, config.rejection.learn_votes, self.services.clock],
                id="rejection-recalibrate",
                name="learn from feedback; re-calibrate the gates if their examples or the index "
                "changed",
                max_instances=1,
                coalesce=True,
            )
            log.info(
                "feedback learning and gate re-calibration every %g minutes",
                config.rejection.check_minutes,
            )
        if scheduler.get_jobs():
            scheduler.start()
            self.scheduler = scheduler

    def stop(self) -> None:
        if self.scheduler is None:
            return
        self.scheduler.shutdown(wait=False)
        self.scheduler = None
        if self.services.knowledge is not None:
            # A build running in its thread stops at the next batch; what it stored is kept.
            self.services.knowledge.cancel_build()
