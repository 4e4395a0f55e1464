"""Background jobs of the daemon (apscheduler): sweeping stuck messages, re-indexing, and
learning (feedback into examples, then re-calibrating the gates).

The jobs are plain functions and methods (``Recovery.sweep``, ``knowledge.jobs.reindex``,
``bot.app.learning.learn``); apscheduler's asyncio scheduler runs coroutine functions on the
event loop and plain ones in a worker thread, so a build never blocks the event loop. Each job's
last run (when, how long, what came of it) is kept for the console.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.learning import Lesson, learn
from bot.recovery import Recovery
from bot.services import Services
from knowledge.indexer import BuildReport
from knowledge.jobs import reindex

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    """A job's last run: when it started and ended, and what came of it in words."""

    started: datetime | None = None
    finished: datetime | None = None
    outcome: str = "running"
    ok: bool = True


@dataclass(frozen=True)
class JobStatus:
    id: str
    name: str
    next_run: datetime | None
    last: JobRun | None


def describe_reindex(report: BuildReport | None) -> str:
    if report is None:
        return "skipped or failed (see the log)"
    return (
        f"{report.added} added, {report.changed} changed, {report.removed} removed documents "
        f"in {report.seconds:.1f} s"
    )


def describe_lesson(lesson: Lesson) -> str:
    learned = sum(len(item) for item in lesson.learned.values())
    words = [f"{learned} learned examples" + (" (changed)" if lesson.changed else "")]
    for group, refit in lesson.refits.items():
        kept = "in use" if refit.kept_new else "not used (worse)"
        words.append(f"{group or 'global'} gate refitted: F1 {refit.f1_after:.3f}, {kept}")
    if not lesson.refits:
        words.append("no gate needed a refit")
    return "; ".join(words)


class Jobs:
    """One apscheduler scheduler for all the daemon's jobs, started and stopped with the bot."""

    def __init__(self, services: Services, recovery: Recovery | None = None) -> None:
        self.services = services
        self.recovery = recovery
        self.scheduler: AsyncIOScheduler | None = None
        self.runs: dict[str, JobRun] = {}
        self._describe: dict[str, Callable[[Any], str]] = {}

    def start(self) -> None:
        """Schedule the jobs bot.yaml asks for: the sweep for stuck messages, re-indexing
        (unless knowledge.reindex is 0), and learning from feedback and re-calibrating the
        rejection gates (when a pipeline uses them)."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        config = self.services.config
        if self.recovery is not None:
            seconds = config.queue.sweep_interval_seconds
            scheduler.add_job(
                self.recovery.sweep,
                IntervalTrigger(seconds=seconds),
                id="sweep-stuck-messages",
                name="pick up messages stuck in received, processing or replying",
                max_instances=1,
                coalesce=True,
            )
            self._describe["sweep-stuck-messages"] = lambda picked: f"{picked} picked up"
            log.info(
                "stuck messages swept every %gs (stuck after %gs)",
                seconds,
                config.queue.stuck_after_seconds,
            )
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
            self._describe["knowledge-reindex"] = describe_reindex
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
            self._describe["rejection-recalibrate"] = describe_lesson
            log.info(
                "feedback learning and gate re-calibration every %g minutes",
                config.rejection.check_minutes,
            )
        if scheduler.get_jobs():
            scheduler.add_listener(
                self._record,
                EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED,
            )
            scheduler.start()
            self.scheduler = scheduler

    def _record(self, event: JobEvent) -> None:
        """apscheduler's listener: note when each job starts and how it ends."""
        now = self.services.clock()
        if isinstance(event, JobSubmissionEvent):
            self.runs[event.job_id] = JobRun(started=now)
            return
        run = self.runs.get(event.job_id) or JobRun()
        run.finished = now
        if isinstance(event, JobExecutionEvent) and event.exception is not None:
            run.outcome, run.ok = (
                f"error: {type(event.exception).__name__}: {event.exception}",
                False,
            )
        elif isinstance(event, JobExecutionEvent) and event.code == EVENT_JOB_EXECUTED:
            describe = self._describe.get(event.job_id, str)
            run.outcome, run.ok = describe(event.retval), True
        else:
            run.outcome, run.ok = "missed (its time passed while the scheduler was busy)", False
        self.runs[event.job_id] = run

    def status(self) -> list[JobStatus]:
        """Every scheduled job with its next and last run, for the console."""
        if self.scheduler is None:
            return []
        return [
            JobStatus(job.id, job.name, job.next_run_time, self.runs.get(job.id))
            for job in self.scheduler.get_jobs()
        ]

    def stop(self) -> None:
        if self.scheduler is None:
            return
        self.scheduler.shutdown(wait=False)
        self.scheduler = None
        if self.services.knowledge is not None:
            # A build running in its thread stops at the next batch; what it stored is kept.
            self.services.knowledge.cancel_build()
