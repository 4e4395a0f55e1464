"""Picking up what a crash, a stop or a failed database write left unfinished, so no stored
message is silently lost or left waiting.

At start-up (``resume``) and then on a schedule (``sweep``, for messages stuck longer than
``queue.stuck_after_seconds``), unfinished messages of this worker's platforms are picked up:

- ``received``/``processing``: queued again;
- ``replying`` with its reply stored but not sent: the stored reply is resent as it is;
- ``replying`` with its reply held for a human to answer first: scheduled again for its time;
- ``replying`` with its reply sent, failed for good or withdrawn: the final status is written;
- any of them older than ``queue.resume_max_age_minutes``: expired (an answer an hour late is
  noise in a group).

A message this worker holds (queued, in the pipeline, being sent, its reply held on a timer) is
never touched, so nothing in flight is answered twice. Each picked-up message gets a
``recovered`` step in its trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from bot.config import QueueSettings
from bot.holds import ANSWERED_BY_HUMAN, Holds
from bot.inbox import Enqueue
from bot.outbox import Outbox, recovered_step
from bot.outcomes import Outcomes
from bot.queues import Queued
from bot.storage import groups, repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus, ReplyStatus

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        database: Database,
        outcomes: Outcomes,
        outbox: Outbox,
        holds: Holds,
        enqueue: Enqueue,
        settings: QueueSettings,
        clock: Callable[[], datetime],
        platforms: Collection[str],
        in_flight: Callable[[int], bool],
    ) -> None:
        self.db = database
        self.outcomes = outcomes
        self.outbox = outbox
        self.holds = holds
        self.enqueue = enqueue
        self.settings = settings
        self.clock = clock
        # Only messages of the adapters running here: another worker picks up its own.
        self.platforms = sorted(platforms)
        self.in_flight = in_flight

    async def resume(self) -> int:
        """At start-up: every unfinished message (nothing is in flight yet)."""
        return await self._pick_up(None, "a restart")

    async def sweep(self) -> int:
        """The scheduled backstop: messages stuck in one status longer than
        ``queue.stuck_after_seconds`` and not in flight here. Returns how many were picked up."""
        return await self._pick_up(timedelta(seconds=self.settings.stuck_after_seconds), "")

    async def _pick_up(self, idle: timedelta | None, cause: str) -> int:
        """Pick up the unfinished messages not in flight here and, unless ``idle`` is None,
        unchanged for at least that long."""
        now = self.clock()
        max_age = timedelta(minutes=self.settings.resume_max_age_minutes)
        picked = 0
        for item in await self.db.run(repo.unfinished_messages, self.platforms):
            stuck = now - item.updated_at
            if self.in_flight(item.id) or (idle is not None and stuck < idle):
                continue
            held = item.status == MessageStatus.REPLYING and item.reply_status == ReplyStatus.HELD
            if held and item.reply_id in self.holds:
                continue  # waiting for its time on a timer here: not stuck
            picked += 1
            why = cause or f"{stuck.total_seconds():.0f}s stuck in {item.status}"
            if now - item.received_at > max_age:
                await self._expire(item, why)
            elif item.status != MessageStatus.REPLYING or item.reply_id is None:
                log.info("message #%d: resuming after %s (was %s)", item.id, why, item.status)
                note = f"resumed after {why}" + (f" (was {item.status})" if cause else "")
                self.enqueue(item.conversation_key, Queued(item.id, item.sender_id, note))
            elif held:
                log.info("message #%d: its reply is held until %s", item.id, item.held_until)
                self.holds.schedule(item.id, item.reply_id, item.held_until or now)
            elif item.reply_status == ReplyStatus.PENDING:
                log.info("message #%d: resending its stored reply after %s", item.id, why)
                self.outbox.resend(item.id, item.reply_id, f"reply resent after {why}")
            else:
                await self._record_send(item, why)
        if picked and cause == "":
            log.warning("sweep: picked up %d stuck message(s)", picked)
        return picked

    async def _expire(self, item: repo.Unfinished, why: str) -> None:
        if item.reply_status == ReplyStatus.HELD and item.reply_id is not None:
            await self.db.run(groups.withdraw, item.reply_id)
        minutes = self.settings.resume_max_age_minutes
        log.info(
            "message #%d expired (left %s, received %s)", item.id, item.status, item.received_at
        )
        await self.outcomes.finish(
            [item.id],
            MessageStatus.EXPIRED,
            f"ignored: expired (left {item.status} by {why}, older than {minutes:g} min)",
            [recovered_step(f"expired after {why}")],
        )

    async def _record_send(self, item: repo.Unfinished, why: str) -> None:
        """The reply went out, failed for good or was withdrawn, but the message's status was
        not written."""
        view = await self.outcomes.view(item.id)
        trace = [*(view["trace"] if view else []), recovered_step(f"status written after {why}")]
        if item.reply_status == ReplyStatus.SENT:
            decision = (view or {}).get("decision") or "answered"
            await self.outcomes.finish([item.id], MessageStatus.ANSWERED, decision, trace)
        elif item.reply_status == ReplyStatus.WITHDRAWN:
            await self.outcomes.finish([item.id], MessageStatus.IGNORED, ANSWERED_BY_HUMAN, trace)
        else:
            error = item.reply_error or "unknown error"
            await self.outcomes.finish(
                [item.id], MessageStatus.FAILED, f"failed: send: {error}", trace
            )
