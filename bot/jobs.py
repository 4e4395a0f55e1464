"""Background jobs of the daemon (apscheduler): today, re-indexing the knowledge base.

The jobs are plain functions (``knowledge.jobs.reindex``); apscheduler's asyncio scheduler runs
such functions in a worker thread, so a build never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.services import Services

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.scheduler: AsyncIOScheduler | None = None
        self.gate_scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        """Schedule the jobs bot.yaml asks for (none when knowledge.reindex is 0)."""
        from knowledge.gate.jobs import start_gate_jobs

        self.gate_scheduler = start_gate_jobs(self.services)
        kb = self.services.knowledge
        minutes = self.services.config.knowledge.reindex.interval_minutes
        if kb is None or minutes <= 0:
            return
        from knowledge.jobs import reindex

        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
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
        scheduler.start()
        self.scheduler = scheduler
        log.info("knowledge base re-index scheduled every %g minutes", minutes)

    def stop(self) -> None:
        if self.gate_scheduler is not None:
            self.gate_scheduler.shutdown(wait=False)
            self.gate_scheduler = None
        if self.scheduler is None:
            return
        self.scheduler.shutdown(wait=False)
        self.scheduler = None
        if self.services.knowledge is not None:
            # A build running in its thread stops at the next batch; what it stored is kept.
            self.services.knowledge.cancel_build()
