"""The outbox: a reply is persisted before it is sent, sent with retries, and its message marked
answered or failed. A stored reply is resent as it is after a crash, never generated again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from bot import metrics
from bot.adapter import Adapter, Delivery, SendError
from bot.config import OutboxSettings
from bot.context import TraceStep
from bot.message import Message, Reply, ReplyKind
from bot.outcomes import Outcomes
from bot.storage import repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus, ReplyStatus

log = logging.getLogger(__name__)


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, SendError) or exc.retryable


class Outbox:
    def __init__(
        self,
        database: Database,
        outcomes: Outcomes,
        adapters: dict[str, Adapter],
        settings: OutboxSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = database
        self.outcomes = outcomes
        self.adapters = adapters
        self.settings = settings
        self.clock = clock
        self.adapters_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._resending: set[int] = set()  # message ids whose stored reply is being resent

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._resending

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a send (or a status write) in the background, keeping a reference to it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def join(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def store_and_deliver(
        self,
        message_id: int,
        message: Message,
        reply: Reply,
        decision: str,
        trace: list[dict[str, Any]],
        *,
        kind: ReplyKind = ReplyKind.ANSWER,
        question: str = "",
        not_before: datetime | None = None,
    ) -> int:
        """Persist the reply, then send it; one with a ``not_before`` time is stored held and
        left to bot.holds to post. Returns the reply's id."""
        reply_id = await self.db.run(
            repo.store_reply,
            message_id,
            reply,
            decision,
            trace,
            kind=kind,
            question=question,
            not_before=not_before,
        )
        if not_before is None:
            await self.deliver(message_id, message, reply_id, reply, trace, decision)
        return reply_id

    async def deliver(
        self,
        message_id: int,
        message: Message,
        reply_id: int,
        reply: Reply,
        trace: list[dict[str, Any]],
        decision: str = "answered",
    ) -> None:
        """Send a persisted reply with retries, then mark the message answered or failed."""
        await self.adapters_ready.wait()
        step = TraceStep(name="send", verdict="sent")
        started = time.perf_counter()
        adapter = self.adapters.get(message.platform)
        delivery = Delivery.for_message(message, message_id)
        attempts = 0
        platform_reply_id: str | None = None
        error: str | None = None
        if adapter is None:
            error = f"no {message.platform!r} adapter is running"
        else:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.settings.send_attempts),
                wait=wait_random_exponential(
                    multiplier=self.settings.retry_initial_seconds,
                    max=self.settings.retry_max_seconds,
                ),
                retry=retry_if_exception(_retryable),
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        platform_reply_id = await adapter.send(delivery, reply)
                        metrics.SEND_ATTEMPTS.labels(message.platform, "ok").inc()
            except Exception as exc:
                metrics.SEND_ATTEMPTS.labels(message.platform, "error").inc()
                log.warning(
                    "message #%d: sending the reply failed after %d attempt(s): %s",
                    message_id,
                    attempts,
                    exc,
                )
                error = f"{type(exc).__name__}: {exc}"
        step.ms = round((time.perf_counter() - started) * 1000, 3)
        step.detail = {"attempts": attempts, "platform": message.platform, **delivery.detail}
        if error is not None:
            step.verdict = f"error: {error}"
        trace = [*trace, step.to_dict()]
        await self.db.run(
            repo.mark_reply,
            reply_id,
            status=ReplyStatus.FAILED if error else ReplyStatus.SENT,
            attempts=attempts,
            error=error,
            platform_reply_id=platform_reply_id,
            sent_at=self.clock(),
        )
        if error is None:
            await self.outcomes.finish([message_id], MessageStatus.ANSWERED, decision, trace)
        else:
            await self.outcomes.finish(
                [message_id], MessageStatus.FAILED, f"failed: send: {error}", trace
            )

    def resend(self, message_id: int, reply_id: int, why: str) -> None:
        """Send, in the background, a reply stored before a crash or a failed write, as it was
        stored; ``why`` goes into the trace. Nothing happens if it is being resent already."""
        if message_id in self._resending:
            return
        self._resending.add(message_id)
        self.spawn(self._resend(message_id, reply_id, why))

    async def _resend(self, message_id: int, reply_id: int, why: str) -> None:
        try:
            message = await self.db.run(repo.load_message, message_id)
            reply = await self.db.run(repo.load_reply, reply_id)
            view = await self.outcomes.view(message_id)
            trace = [*(view["trace"] if view else []), recovered_step(why)]
            decision = (view or {}).get("decision") or "answered"
            await self.deliver(message_id, message, reply_id, reply, trace, decision)
        except Exception:
            # Left `replying`: the sweeper tries again later.
            log.exception("message #%d: resending its stored reply failed", message_id)
        finally:
            self._resending.discard(message_id)


def recovered_step(why: str) -> dict[str, Any]:
    """The trace step that says a message was picked up again, and why."""
    return TraceStep(name="recovered", verdict=why).to_dict()
