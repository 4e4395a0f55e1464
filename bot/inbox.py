"""The inbox: every message is persisted before anything else happens, then queued.

The unique key on (platform, platform message id) makes redelivery harmless: a second delivery
of a stored message is reported as a duplicate and never answered twice. This is the core as
an adapter sees it: ``receive``, and the read side the playground uses.

Storing and queueing are one step that always runs to its end: ``receive`` is shielded, so an
adapter that stops waiting (its platform's ack deadline passed) or a caller that is cancelled
never leaves a message stored but not queued. A redelivery of a message that is still
``received`` queues it again, which does nothing if this worker holds it already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot import metrics
from bot.message import Message, Reaction, utcnow
from bot.outcomes import Outcomes
from bot.queues import Queued
from bot.storage import groups, repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus

log = logging.getLogger(__name__)

Enqueue = Callable[[str, Queued], None]


def conversation_key(message: Message) -> str:
    return f"{message.platform}:{message.conversation_id}"


class Inbox:
    def __init__(
        self,
        database: Database,
        outcomes: Outcomes,
        enqueue: Enqueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.outcomes = outcomes
        self._enqueue = enqueue
        self.clock = clock
        self._tasks: set[asyncio.Task[repo.Stored]] = set()

    async def receive(self, message: Message) -> repo.Stored:
        """Persist and queue one message; safe to call again for a redelivered one. Finishes
        even when the caller stops waiting."""
        task = asyncio.get_running_loop().create_task(self._receive(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _receive(self, message: Message) -> repo.Stored:
        stored = await self.db.run(repo.insert_message, message, self.clock())
        metrics.MESSAGES_RECEIVED.labels(message.platform, str(stored.duplicate).lower()).inc()
        if stored.duplicate:
            log.info(
                "duplicate delivery of %s message %s (stored as #%d, %s)",
                message.platform,
                message.platform_message_id,
                stored.id,
                stored.status,
            )
            if stored.status != MessageStatus.RECEIVED:
                return stored
            # Stored, but its first delivery may never have been queued (the worker stopped
            # in between): queue it; a no-op when it is waiting here already.
        self._enqueue(conversation_key(message), Queued(stored.id, message.sender_id))
        return stored

    async def join(self) -> None:
        """Wait for the messages being stored right now."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def react(self, reaction: Reaction) -> bool:
        """Store a reaction to one of the bot's messages as feedback on the question it
        answered; False when the message is not one of the bot's."""
        stored = await self.db.run(groups.add_reaction, reaction, self.clock())
        if stored is None:
            log.info(
                "%s: reaction to %s, which is not a reply of ours: ignored",
                reaction.platform,
                reaction.message_id,
            )
        return stored is not None

    async def message_view(self, message_id: int) -> dict[str, Any] | None:
        return await self.outcomes.view(message_id)

    async def wait_done(self, message_id: int, wait_seconds: float) -> dict[str, Any] | None:
        return await self.outcomes.wait(message_id, wait_seconds)
