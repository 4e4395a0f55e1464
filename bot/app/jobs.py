"""Background jobs of the daemon (apscheduler): re-indexing and re-calibrating the gate.

The jobs are plain functions and methods (``knowledge.jobs.reindex``, ``RejectionGate.refresh``);
apscheduler's asyncio scheduler runs such functions in a worker thread, so a build never blocks
the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

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
        re-calibrating the rejection gate (when a pipeline uses it)."""
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
        gate = self.services.gate
        if gate is not None:
            scheduler.add_job(
                gate.refresh,
                IntervalTrigger(minutes=config.rejection.check_minutes),
                id="rejection-recalibrate",
                name="re-calibrate the rejection gate if the examples or the index changed",
                max_instances=1,
                coalesce=True,
            )
            log.info(
                "rejection gate re-calibration checked every %g minutes",
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
