"""The bot: inbox, conversation queues, pipeline and outbox, as DESIGN.md draws them.

A message is persisted before anything else happens (the unique key on platform + platform
message id makes redelivery harmless), then queued per conversation, run through the pipeline,
and its reply persisted before it is sent. Whatever a crash interrupts is picked up again at
start-up, or expired if it is too old to be worth answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from adapters.base import Adapter, Delivery, SendError
from bot import metrics
from bot.context import HistoryTurn, TraceStep, TurnContext
from bot.jobs import Jobs
from bot.message import Message, Reply
from bot.pipeline import Pipeline, build_pipelines
from bot.queues import ConversationQueues, Queued
from bot.services import Services
from bot.storage import repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus

log = logging.getLogger(__name__)

HISTORY_TURNS = 6
FINAL_STATUSES = {
    MessageStatus.ANSWERED,
    MessageStatus.IGNORED,
    MessageStatus.FAILED,
    MessageStatus.EXPIRED,
}


def conversation_key(message: Message) -> str:
    return f"{message.platform}:{message.conversation_id}"


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, SendError) or exc.retryable


class Bot:
    def __init__(
        self,
        services: Services,
        database: Database,
        adapters: list[Adapter],
    ) -> None:
        self.services = services
        self.config = services.config
        self.db = database
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.pipelines: dict[str, Pipeline] = build_pipelines(services)
        settings = self.config.queue
        self.queues = ConversationQueues(
            self._handle,
            max_concurrent=settings.max_concurrent_conversations,
            max_pending=settings.max_pending_per_conversation,
            debounce_seconds=settings.debounce_seconds,
        )
        self._done: dict[int, asyncio.Event] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._adapters_ready = asyncio.Event()
        self.jobs = Jobs(services)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, recover: bool = True) -> None:
        """Load models, resume what a crash left unfinished, then start receiving."""
        await self.services.warm_up()
        for pipeline in {id(p): p for p in self.pipelines.values()}.values():
            await pipeline.warm_up()
        if recover:
            await self.recover()
        for adapter in self.adapters.values():
            await adapter.start(self)
        self._adapters_ready.set()
        self.jobs.start()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop receiving, give messages in flight a moment to finish, then cancel the rest
        (they stay `processing` in the database and are resumed at the next start)."""
        self.jobs.stop()
        for adapter in self.adapters.values():
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s failed to stop", adapter.name)
        try:
            await asyncio.wait_for(self.join(), grace_seconds)
        except TimeoutError:
            log.info("stopping with messages still in flight; they resume at the next start")
        await self.queues.close()
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.services.close()

    async def join(self) -> None:
        """Wait until every queued message and pending send is done (for tests and `ask`)."""
        while True:
            await self.queues.join()
            if not self._sending:
                return
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    # -- inbox --------------------------------------------------------------------------------

    async def receive(self, message: Message) -> repo.Stored:
        """Persist and queue one message; safe to call again for a redelivered one."""
        stored = await self.db.run(repo.insert_message, message)
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

    def _enqueue(self, key: str, item: Queued) -> None:
        if not self.queues.put(key, item):
            limit = self.config.queue.max_pending_per_conversation
            task = asyncio.get_running_loop().create_task(
                self._finish(
                    [item.message_id],
                    MessageStatus.IGNORED,
                    f"ignored: overloaded ({limit} messages already waiting in this conversation)",
                    [],
                )
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def message_view(self, message_id: int) -> dict[str, Any] | None:
        return await self.db.run(repo.message_view, message_id)

    async def wait_done(self, message_id: int, wait_seconds: float) -> dict[str, Any] | None:
        """The message's view once it is answered/ignored/failed, or as it is at the timeout."""
        # Register before looking, so a decision made in between still wakes us.
        event = self._done.setdefault(message_id, asyncio.Event())
        view = await self.message_view(message_id)
        if view is None or view["status"] in FINAL_STATUSES:
            return view
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), wait_seconds)
        return await self.message_view(message_id)

    # -- pipeline -----------------------------------------------------------------------------

    def pipeline_for(self, conversation_id: str) -> Pipeline:
        return self.pipelines.get(conversation_id, self.pipelines[""])

    async def _handle(self, burst: list[Queued]) -> None:
        ids = [item.message_id for item in burst]
        primary = ids[0]
        await self.db.run(repo.set_status, ids, MessageStatus.PROCESSING)
        messages = [await self.db.run(repo.load_message, i) for i in ids]
        message = messages[0]
        history = await self.db.run(repo.recent_history, primary, HISTORY_TURNS)
        ctx = TurnContext(
            message=message,
            message_id=primary,
            config=self.config,
            group=self.config.group(message.conversation_id),
            question="\n".join(m.text for m in messages),
            merged_message_ids=ids[1:],
            history=[HistoryTurn(sender, text, reply) for sender, text, reply in history],
        )
        if len(ids) > 1:
            await self._finish(
                ids[1:],
                MessageStatus.IGNORED,
                f"merged into #{primary}",
                [],
                merged_into_id=primary,
            )
        started = time.perf_counter()
        try:
            reply = await self.pipeline_for(message.conversation_id).run(ctx)
        except Exception as exc:
            log.exception("message #%d: pipeline failed", primary)
            await self._finish(
                [primary],
                MessageStatus.FAILED,
                f"failed: {type(exc).__name__}: {exc}",
                ctx.trace_dicts(),
            )
            return
        finally:
            metrics.PIPELINE_SECONDS.observe(time.perf_counter() - started)
        if reply is None:
            await self._finish(
                [primary], MessageStatus.IGNORED, ctx.decision or "ignored", ctx.trace_dicts()
            )
            return
        reply_id = await self.db.run(
            repo.store_reply, primary, reply, ctx.decision or "answered", ctx.trace_dicts()
        )
        await self._deliver(primary, message, reply_id, reply, ctx.trace_dicts())

    async def _finish(
        self,
        ids: list[int],
        status: str,
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
            if (event := self._done.pop(message_id, None)) is not None:
                event.set()

    # -- outbox -------------------------------------------------------------------------------

    async def _deliver(
        self,
        message_id: int,
        message: Message,
        reply_id: int,
        reply: Reply,
        trace: list[dict[str, Any]],
    ) -> None:
        """Send a persisted reply with retries, then mark the message answered or failed."""
        await self._adapters_ready.wait()
        step = TraceStep(name="send", verdict="sent")
        started = time.perf_counter()
        adapter = self.adapters.get(message.platform)
        settings = self.config.outbox
        attempts = 0
        platform_reply_id: str | None = None
        error: str | None = None
        if adapter is None:
            error = f"no {message.platform!r} adapter is running"
        else:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(settings.send_attempts),
                wait=wait_random_exponential(
                    multiplier=settings.retry_initial_seconds, max=settings.retry_max_seconds
                ),
                retry=retry_if_exception(_retryable),
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        platform_reply_id = await adapter.send(
                            Delivery.for_message(message, message_id), reply
                        )
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
        step.detail = {"attempts": attempts, "platform": message.platform}
        if error is not None:
            step.verdict = f"error: {error}"
        trace = [*trace, step.to_dict()]
        await self.db.run(
            repo.mark_reply,
            reply_id,
            status="failed" if error else "sent",
            attempts=attempts,
            error=error,
            platform_reply_id=platform_reply_id,
        )
        if error is None:
            await self._finish([message_id], MessageStatus.ANSWERED, "answered", trace)
        else:
            await self._finish([message_id], MessageStatus.FAILED, f"failed: send: {error}", trace)

    # -- recovery -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Resume messages a crash left unfinished; expire those too old to answer now."""
        unfinished = await self.db.run(repo.unfinished_messages)
        max_age = timedelta(minutes=self.config.queue.resume_max_age_minutes)
        now = self.services.clock()
        for item in unfinished:
            if item.platform not in self.adapters:
                continue  # its adapter is not running here; it is resumed where it is
            if now - item.received_at > max_age:
                log.info(
                    "message #%d expired (left %s, received %s)",
                    item.id,
                    item.status,
                    item.received_at.isoformat(),
                )
                await self._finish(
                    [item.id],
                    MessageStatus.EXPIRED,
                    f"ignored: expired (left {item.status} by a restart and older than "
                    f"{self.config.queue.resume_max_age_minutes:g} min)",
                    [],
                )
            elif item.status == MessageStatus.REPLYING and item.pending_reply_id is not None:
                log.info("message #%d: resending its stored reply", item.id)
                task = asyncio.get_running_loop().create_task(
                    self._resend(item.id, item.pending_reply_id)
                )
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            else:
                log.info("message #%d: resuming (was %s)", item.id, item.status)
                self._enqueue(item.conversation_key, Queued(item.id, item.sender_id))

    async def _resend(self, message_id: int, reply_id: int) -> None:
        message = await self.db.run(repo.load_message, message_id)
        reply = await self.db.run(repo.load_reply, reply_id)
        view = await self.message_view(message_id)
        trace = view["trace"] if view else []
        await self._deliver(message_id, message, reply_id, reply, trace)
