"""The inbox: every message is persisted before anything else happens, then queued.

The unique key on (platform, platform message id) makes redelivery harmless: a second delivery
of a stored message is reported as a duplicate and never answered twice. This is the core as
an adapter sees it: ``receive``, and the read side the playground uses.
"""

from __future__ import annotations

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

    async def receive(self, message: Message) -> repo.Stored:
        """Persist and queue one message; safe to call again for a redelivered one."""
        stored = await self.db.run(repo.insert_message, message, self.clock())
        metrics.MESSAGES_RECEIVED.labels(message.platform, str(stored.duplicate).lower()).inc()
        if stored.duplicate:
            log.info(
                "duplicate delivery of %s message %s (stored as #%d)",
                message.platform,
                message.platform_message_id,
                stored.id,
            )
            return stored
        self._enqueue(conversation_key(message), Queued(stored.id, message.sender_id))
        return stored

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
