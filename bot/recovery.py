"""Picking up what a crash or a stop left unfinished, so no stored message is silently lost.

At start-up, messages still ``received``/``processing`` are queued again and those ``replying``
have their stored reply resent (or, when it is held for a human to answer first, scheduled
again for its time); those older than ``queue.resume_max_age_minutes`` are expired instead (an
answer an hour late is noise in a group).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from bot.config import QueueSettings
from bot.holds import Holds
from bot.inbox import Enqueue
from bot.outbox import Outbox
from bot.outcomes import Outcomes
from bot.queues import Queued
from bot.storage import groups, repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus

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
    ) -> None:
        self.db = database
        self.outcomes = outcomes
        self.outbox = outbox
        self.holds = holds
        self.enqueue = enqueue
        self.settings = settings
        self.clock = clock

    async def resume(self, platforms: Collection[str]) -> None:
        """Resume messages a crash left unfinished; expire those too old to answer now.

        Only messages of ``platforms`` (the adapters running here) are touched: another
        worker resumes its own."""
        unfinished = await self.db.run(repo.unfinished_messages)
        max_age = timedelta(minutes=self.settings.resume_max_age_minutes)
        now = self.clock()
        for item in unfinished:
            if item.platform not in platforms:
                continue
            if now - item.received_at > max_age:
                if item.held_reply_id is not None:
                    await self.db.run(groups.withdraw, item.held_reply_id)
                log.info(
                    "message #%d expired (left %s, received %s)",
                    item.id,
                    item.status,
                    item.received_at.isoformat(),
                )
                await self.outcomes.finish(
                    [item.id],
                    MessageStatus.EXPIRED,
                    f"ignored: expired (left {item.status} by a restart and older than "
                    f"{self.settings.resume_max_age_minutes:g} min)",
                    [],
                )
            elif item.status == MessageStatus.REPLYING and item.held_reply_id is not None:
                log.info("message #%d: its reply is held until %s", item.id, item.held_until)
                self.holds.schedule(item.id, item.held_reply_id, item.held_until or now)
            elif item.status == MessageStatus.REPLYING and item.pending_reply_id is not None:
                log.info("message #%d: resending its stored reply", item.id)
                self.outbox.spawn(self.outbox.resend(item.id, item.pending_reply_id))
            else:
                log.info("message #%d: resuming (was %s)", item.id, item.status)
                self.enqueue(item.conversation_key, Queued(item.id, item.sender_id))
