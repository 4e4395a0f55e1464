"""The scheduled re-index, as a plain function the scheduler (and a test) can call.

It is the same incremental build as `huixiangdou-bot kb build`, stamped with the injected
clock's time. It never raises: a failed run is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from knowledge.indexer import BuildBusy, BuildCancelled, BuildReport
from knowledge.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)


def reindex(kb: KnowledgeBase, clock: Callable[[], datetime]) -> BuildReport | None:
    """Re-index what changed in the sources; None when the run was skipped or failed."""
    now = clock()
    try:
        report = kb.build(progress=False, now=now)
    except BuildBusy as exc:
        log.info("scheduled re-index skipped: %s", exc)
        return None
    except BuildCancelled:
        log.info("scheduled re-index stopped (the bot is shutting down); the next run resumes")
        return None
    except Exception:
        log.exception("scheduled re-index failed; the index is unchanged where it failed")
        return None
    if report.changed_anything:
        log.info(
            "scheduled re-index at %s: %d added, %d changed, %d removed documents",
            now.isoformat(timespec="seconds"),
            report.added,
            report.changed,
            report.removed,
        )
    return report
