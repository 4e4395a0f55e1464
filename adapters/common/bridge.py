"""From an SDK's thread to the core's event loop: store the message, then let the SDK ack.

Platform SDKs call our handler on threads of their own (a websocket loop, a webhook worker).
The handler hands the Message to the inbox on the core's loop and waits only until it is
persisted (milliseconds), so the platform gets its ack long before any answer exists, and a
message is never acked before it is safe. If storing fails or takes too long the handler
raises StoreFailed, the SDK (or the webhook route: 503) answers with an error, and the platform
redelivers. The inbox goes on storing and queueing after we stop waiting, and dedupes the
redelivery; a message stored but not queued is queued by its redelivery or by the sweeper.

What an adapter calls: ``StoreBridge(platform)``, ``attach(inbox, loop)`` in ``start``, and
``store(message)`` from the SDK's thread (catch StoreFailed and make the SDK answer an error).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from cachetools import LRUCache

from bot.message import Message, Reaction
from bot.storage.repo import Stored

if TYPE_CHECKING:
    from bot.inbox import Inbox

log = logging.getLogger(__name__)

# Platforms want their ack within a few seconds (Feishu 3 s, DingTalk and WeCom 5 s).
STORE_TIMEOUT_SECONDS = 2.5


class StoreFailed(RuntimeError):
    """The inbox did not confirm the message in time; the platform should redeliver it."""


class StoreBridge:
    """Started with the inbox and the core's loop; ``store`` is called from SDK threads."""

    def __init__(self, platform: str, timeout: float = STORE_TIMEOUT_SECONDS) -> None:
        self.platform = platform
        self.timeout = timeout
        self._inbox: Inbox | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local = threading.local()

    def attach(self, inbox: Inbox, loop: asyncio.AbstractEventLoop) -> None:
        self._inbox, self._loop = inbox, loop

    def failed_on_this_thread(self) -> bool:
        """Whether the last ``store`` on this thread failed (webhook handlers map it to 503)."""
        return bool(getattr(self._local, "failed", False))

    def store(self, message: Message) -> Stored:
        inbox, loop = self._inbox, self._loop
        if inbox is None or loop is None:
            raise RuntimeError(f"the {self.platform} adapter has not been started")
        self._local.failed = False
        future = asyncio.run_coroutine_threadsafe(inbox.receive(message), loop)
        try:
            stored = future.result(timeout=self.timeout)
        except BaseException as exc:
            # The inbox finishes storing and queueing even when we stop waiting (it is
            # shielded), so a redelivery finds the message stored and queued.
            self._local.failed = True
            log.warning(
                "%s: message %s not confirmed (%s: %s); the platform will redeliver it",
                self.platform,
                message.platform_message_id,
                type(exc).__name__,
                exc,
            )
            if isinstance(exc, FutureTimeout):
                raise StoreFailed("storing the message took too long") from None
            raise StoreFailed(f"storing the message failed: {type(exc).__name__}") from None
        log.info(
            "%s: message %s in %s stored as #%d%s",
            self.platform,
            message.platform_message_id,
            message.conversation_id,
            stored.id,
            " (duplicate)" if stored.duplicate else "",
        )
        return stored

    def react(self, reaction: Reaction) -> bool:
        """Hand a reaction to the inbox (stored as feedback); False when it is not about one of
        the bot's messages. Raises StoreFailed like ``store``."""
        inbox, loop = self._inbox, self._loop
        if inbox is None or loop is None:
            raise RuntimeError(f"the {self.platform} adapter has not been started")
        future = asyncio.run_coroutine_threadsafe(inbox.react(reaction), loop)
        try:
            return future.result(timeout=self.timeout)
        except BaseException as exc:
            log.warning(
                "%s: reaction to %s not stored (%s); the platform will redeliver it",
                self.platform,
                reaction.message_id,
                type(exc).__name__,
            )
            raise StoreFailed(f"storing the reaction failed: {type(exc).__name__}") from None


class RecentMap:
    """A small thread-safe LRU (event ids seen, texts of recent messages for quoted replies):
    SDK threads write, others read."""

    def __init__(self, size: int) -> None:
        self._items: LRUCache[str, str] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value: str = "") -> None:
        with self._lock:
            self._items[key] = value
