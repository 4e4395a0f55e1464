"""Where a message's story ends: its final status, decision and trace written once, and anyone
waiting for it (the playground's ``wait``, `ask`) woken. A reply held for a human to answer
first wakes them too: the decision is made, only the posting waits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bot import metrics
from bot.storage import repo
from bot.storage.db import Database
from bot.storage.models import FINAL_STATUSES, MessageStatus, ReplyStatus


class Outcomes:
    def __init__(self, database: Database) -> None:
        self.db = database
        self._done: dict[int, asyncio.Event] = {}

    async def finish(
        self,
        ids: list[int],
        status: MessageStatus,
        decision: str,
        trace: list[dict[str, Any]],
        merged_into_id: int | None = None,
    ) -> None:
        await self.db.run(
            repo.set_status,
            ids,
            status,
            decision=decision,
            trace=trace,
            merged_into_id=merged_into_id,
        )
        metrics.MESSAGES_DECIDED.labels(status).inc(len(ids))
        for message_id in ids:
            self.held(message_id)

    def held(self, message_id: int) -> None:
        """Wake whoever waits for this message (its reply is held, or it is finished)."""
        if (event := self._done.pop(message_id, None)) is not None:
            event.set()

    async def view(self, message_id: int) -> dict[str, Any] | None:
        return await self.db.run(repo.message_view, message_id)

    async def wait(self, message_id: int, wait_seconds: float) -> dict[str, Any] | None:
        """The message's view once it is answered/ignored/failed or its reply held, or as it
        is at the timeout."""
        # Register before looking, so a decision made in between still wakes us.
        event = self._done.setdefault(message_id, asyncio.Event())
        view = await self.view(message_id)
        held = view is not None and (view["reply"] or {}).get("status") == ReplyStatus.HELD
        if view is None or view["status"] in FINAL_STATUSES or held:
            self._done.pop(message_id, None)
            return view
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), wait_seconds)
        return await self.view(message_id)
