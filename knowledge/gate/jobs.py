"""The daemon's re-calibration: a plain function apscheduler calls every few minutes.

It re-fits the stored gate when the example files or the indexed documents changed (after the
scheduled re-index, or an admin's edit of good_questions.json); the ``reject.embedding``
middleware notices the new gate file and loads it before the next message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.services import Services
    from knowledge.gate.calibrate import Calibrator

log = logging.getLogger(__name__)


def recalibrate(calibrator: Calibrator) -> bool:
    """Re-fit the gate if it is stale; True when it did. Never raises: a failure is logged and
    the old gate stays in use until the next run."""
    try:
        reason = calibrator.stale_reason(calibrator.load())
        if reason is None:
            return False
        log.info("re-calibrating the rejection gate: %s", reason)
        calibrator.fit()
        return True
    except Exception:
        log.exception("re-calibrating the rejection gate failed; the old gate stays in use")
        return False


def uses_gate(services: Services) -> bool:
    config = services.config
    names = set(config.pipeline)
    for group in config.groups.values():
        names.update(group.pipeline or [])
    return "reject.embedding" in names and services.knowledge is not None


def add_gate_jobs(services: Services, scheduler: AsyncIOScheduler) -> bool:
    """Schedule the re-calibration check when a pipeline uses the gate; False when none does."""
    if not uses_gate(services):
        return False
    from apscheduler.triggers.interval import IntervalTrigger

    from knowledge.gate.calibrate import Calibrator

    config = services.config
    settings = config.rejection.resolve(config.source.parent if config.source else None)
    assert services.knowledge is not None
    calibrator = Calibrator(services.knowledge, settings, config.work_dir)
    scheduler.add_job(
        recalibrate,
        IntervalTrigger(minutes=settings.check_minutes),
        args=[calibrator],
        id="rejection-recalibrate",
        name="re-calibrate the rejection gate if the examples or the index changed",
        max_instances=1,
        coalesce=True,
    )
    log.info("rejection gate re-calibration checked every %g minutes", settings.check_minutes)
    return True
