"""The gate that learns: confirmed feedback becomes examples, and the gates are refitted.

Feedback (reactions, "thanks"/"wrong" replies, admins' ``/hxd good``/``bad``/``forget``) is
stored as it comes. This job, run by the daemon every ``rejection.check_minutes``, turns what
is confirmed into learned examples beside the gates and refits the gates whose examples
changed. Confirmed means: an admin said so (the latest admin word wins), or at least
``rejection.learn_votes`` more members said "right" than "wrong" about a question (or the
reverse), each member counted once, by their latest word. A plain function of the database,
the gates and a clock, so tests call it directly.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.storage import groups
from bot.storage.db import Database
from bot.storage.models import FeedbackSource
from knowledge.rejection.gate import Refit
from knowledge.rejection.gates import RejectionGates
from knowledge.rejection.learned import Learned, write_learned

log = logging.getLogger(__name__)


@dataclass
class Lesson:
    """What one run learned: examples per group, whether they changed, and the refits."""

    learned: dict[str, Learned] = field(default_factory=dict)
    changed: bool = False
    refits: dict[str, Refit] = field(default_factory=dict)


def confirmed(rows: list[groups.FeedbackRow], votes: int) -> dict[str, Learned]:
    """The examples the feedback confirms, per group (see the module's docstring)."""
    admin: dict[tuple[str, str], int] = {}
    members: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    order: dict[tuple[str, str], int] = {}
    for row in rows:  # oldest first: later words replace earlier ones
        text = " ".join(row.example.split())
        if not text or row.rating == 0:
            continue
        key = (row.conversation_id, text)
        order.setdefault(key, len(order))
        if row.source == FeedbackSource.ADMIN:
            admin[key] = row.rating
        else:
            members[key][row.user_id] = 1 if row.rating > 0 else -1
    learned: dict[str, Learned] = {}
    for key in sorted(order, key=order.__getitem__):
        if key in admin:
            label = admin[key]
        else:
            net = sum(members[key].values())
            label = net if abs(net) >= votes else 0
        if label == 0:
            continue
        conversation_id, text = key
        item = learned.setdefault(conversation_id, Learned(conversation_id))
        (item.good if label > 0 else item.bad).append(text)
    return learned


def learn(
    database: Database,
    gates: RejectionGates,
    votes: int,
    clock: Callable[[], datetime],
) -> Lesson:
    """Write the confirmed examples beside the gates, then refit those that changed."""
    learned = confirmed(database.run_sync(groups.all_feedback), votes)
    changed = write_learned(gates.work_dir, learned)
    refits = gates.refresh(clock())
    for group, refit in refits.items():
        log.info(
            "gate %s re-calibrated (%s): cross-validated F1 %s -> %.3f, %s",
            group or "(global)",
            refit.reason,
            "none" if refit.f1_before is None else f"{refit.f1_before:.3f}",
            refit.f1_after,
            "in use" if refit.kept_new else "worse, not used",
        )
    return Lesson(learned, changed, refits)
