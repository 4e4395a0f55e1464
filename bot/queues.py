"""One queue per conversation: in order within a group, concurrent across groups, bounded.

A short debounce merges a burst of lines from one sender into a single question, the way people
type in chat ("hi" / "how do I install mmdet" / "on windows").

The queues know which messages they hold, waiting or being handled: queueing one of those again
(a redelivery, the sweeper) does nothing, so a message is never handled twice at once here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Queued:
    message_id: int
    sender_id: str
    # Why it is queued again, when it is (a restart, a sweep): noted in its trace.
    recovered: str = ""


@dataclass
class _Lane:
    items: deque[Queued] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


Handler = Callable[[list[Queued]], Awaitable[None]]


class ConversationQueues:
    def __init__(
        self,
        handler: Handler,
        *,
        max_concurrent: int,
        max_pending: int,
        debounce_seconds: float,
    ) -> None:
        self._handler = handler
        self._max_pending = max_pending
        self._debounce = debounce_seconds
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[int] = set()  # message ids waiting or being handled

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._held

    def put(self, key: str, item: Queued) -> bool:
        """Queue a message (nothing to do if it is here already); False when this conversation
        already has too many waiting."""
        if item.message_id in self._held:
            return True
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if len(lane.items) >= self._max_pending:
            return False
        self._held.add(item.message_id)
        lane.items.append(item)
        lane.arrived.set()
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(
                self._drain(key, lane), name=f"conversation {key}"
            )
            self._tasks.add(lane.task)
            lane.task.add_done_callback(self._tasks.discard)
        return True

    def pending(self, key: str) -> int:
        lane = self._lanes.get(key)
        return len(lane.items) if lane else 0

    async def _burst(self, lane: _Lane) -> list[Queued]:
        first = lane.items.popleft()
        burst = [first]
        if self._debounce <= 0:
            return burst
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._debounce
        while True:
            while lane.items and lane.items[0].sender_id == first.sender_id:
                burst.append(lane.items.popleft())
                deadline = loop.time() + self._debounce
            if lane.items:  # someone else spoke: the burst is over
                return burst
            remaining = deadline - loop.time()
            if remaining <= 0:
                return burst
            lane.arrived.clear()
            try:
                await asyncio.wait_for(lane.arrived.wait(), remaining)
            except TimeoutError:
                return burst

    async def _drain(self, key: str, lane: _Lane) -> None:
        try:
            while lane.items:
                burst = await self._burst(lane)
                async with self._semaphore:
                    try:
                        await self._handler(burst)
                    except Exception:
                        log.exception("conversation %s: handler failed", key)
                    finally:
                        self._held.difference_update(item.message_id for item in burst)
        finally:
            lane.task = None
            if not lane.items and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def join(self) -> None:
        """Wait until every queued message has been handled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._lanes.clear()
        self._held.clear()
