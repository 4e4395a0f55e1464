"""Humans first: replies held back for a while so a person can answer the question first.

The pipeline's ``gate`` middleware sets ``ctx.hold_until``; the runtime stores the reply as
``held`` with that ``not_before`` time (so a restart finds it: recovery schedules it again) and
the conversation's queue moves on. When the time comes, a timer releases it: if someone other
than the asker replied to, quoted or answered in the thread of the question meanwhile, or a
middleware of the conversation's pipeline judges a later message to be an answer
(``answered_by_human``), the reply is withdrawn (``ignored: answered-by-human``); otherwise it
is posted. Taking a held reply is one conditional update, so two workers never both post it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.context import TraceStep
from bot.message import Message, Reply
from bot.outbox import Outbox
from bot.outcomes import Outcomes
from bot.storage import groups, repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus

log = logging.getLogger(__name__)

ANSWERED_BY_HUMAN = "ignored: answered-by-human"


@runtime_checkable
class HumanAnswerJudge(Protocol):
    """A middleware that can tell whether a later message answered the question."""

    async def answered_by_human(
        self, question: Message, reply: Reply, later: Sequence[Message]
    ) -> dict[str, object] | None:
        """Evidence (for the trace) that a message in ``later`` answers ``question``, or None."""
        ...


def replied_to(question: Message, later: Sequence[Message]) -> Message | None:
    """The first message from someone other than the asker that replies to, quotes or is in
    the thread of the question, and is not addressed to the bot."""
    asked = question.platform_message_id
    for message in later:
        if message.sender_id == question.sender_id or message.mentioned_bot:
            continue
        if asked in (message.reply_to, message.thread_root):
            return message
    return None


# The middlewares of a conversation's pipeline, by conversation id.
Judges = Callable[[str], Sequence[object]]


class Holds:
    def __init__(
        self,
        database: Database,
        outcomes: Outcomes,
        outbox: Outbox,
        clock: Callable[[], datetime],
        judges: Judges,
    ) -> None:
        self.db = database
        self.outcomes = outcomes
        self.outbox = outbox
        self.clock = clock
        self.judges = judges
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def __contains__(self, reply_id: object) -> bool:
        """Whether the reply waits for its time on a timer here (the sweeper leaves it)."""
        return reply_id in self._timers

    def schedule(self, message_id: int, reply_id: int, not_before: datetime) -> None:
        """Release the reply at ``not_before`` (measured on the bot's clock)."""
        delay = max(0.0, (not_before - self.clock()).total_seconds())
        loop = asyncio.get_running_loop()
        if (old := self._timers.pop(reply_id, None)) is not None:
            old.cancel()
        self._timers[reply_id] = loop.call_later(delay, self._fire, message_id, reply_id)

    def _fire(self, message_id: int, reply_id: int) -> None:
        self._timers.pop(reply_id, None)
        self.outbox.spawn(self._release_logged(message_id, reply_id))

    async def _release_logged(self, message_id: int, reply_id: int) -> None:
        try:
            await self.release(message_id, reply_id)
        except Exception:
            # Still held in the database: the next start's recovery tries again.
            log.exception("message #%d: releasing its held reply failed", message_id)

    def cancel(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def release_due(self, platforms: Collection[str]) -> int:
        """Release every held reply of ``platforms`` whose time has come; how many were.
        (Timers do this; tests call it after moving the clock on.)"""
        due = await self.db.run(groups.due_held, self.clock())
        released = 0
        for held in due:
            if held.platform in platforms:
                if (timer := self._timers.pop(held.reply_id, None)) is not None:
                    timer.cancel()
                await self.release(held.message_id, held.reply_id)
                released += 1
        return released

    async def release(self, message_id: int, reply_id: int) -> None:
        question = await self.db.run(repo.load_message, message_id)
        reply = await self.db.run(repo.load_reply, reply_id)
        view = await self.outcomes.view(message_id)
        trace = list(view["trace"]) if view else []
        decision = (view or {}).get("decision") or "answered"
        started = time.perf_counter()
        later = [item.message for item in await self.db.run(groups.messages_after, message_id)]
        evidence = await self._human_answer(question, reply, later)
        step = TraceStep(
            name="hold", verdict="released", detail={"messages_meanwhile": len(later)}
        )
        step.ms = round((time.perf_counter() - started) * 1000, 3)
        if evidence is not None:
            if not await self.db.run(groups.withdraw, reply_id):
                return  # released by another worker already
            step.verdict = ANSWERED_BY_HUMAN
            step.detail.update(evidence)
            log.info("message #%d: a human answered first: reply withdrawn", message_id)
            await self.outcomes.finish(
                [message_id], MessageStatus.IGNORED, ANSWERED_BY_HUMAN, [*trace, step.to_dict()]
            )
            return
        if not await self.db.run(groups.claim_held, reply_id):
            return
        await self.outbox.deliver(
            message_id, question, reply_id, reply, [*trace, step.to_dict()], decision
        )

    async def _human_answer(
        self, question: Message, reply: Reply, later: list[Message]
    ) -> dict[str, object] | None:
        if (found := replied_to(question, later)) is not None:
            return {"by": found.sender_name or found.sender_id, "how": "reply", "text": found.text}
        for middleware in self.judges(question.conversation_id):
            if isinstance(middleware, HumanAnswerJudge):
                evidence = await middleware.answered_by_human(question, reply, later)
                if evidence is not None:
                    return evidence
        return None
