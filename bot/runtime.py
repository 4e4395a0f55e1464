"""The bot at run time: inbox, conversation queues, pipeline, outbox and recovery, wired
together as DESIGN.md draws them, started and stopped as one."""

from __future__ import annotations

import asyncio
import logging
import time

from bot import metrics
from bot.adapter import Adapter
from bot.context import HistoryTurn, TraceStep, TurnContext
from bot.holds import Holds
from bot.inbox import Inbox
from bot.llm.protocol import LLMError
from bot.message import Reply
from bot.outbox import Outbox
from bot.outcomes import Outcomes
from bot.pipeline import Pipeline, build_pipelines
from bot.queues import ConversationQueues, Queued
from bot.recovery import Recovery
from bot.services import Services
from bot.storage import repo
from bot.storage.db import Database
from bot.storage.models import MessageStatus

log = logging.getLogger(__name__)

HISTORY_TURNS = 6
# The verdicts a group's ``non_answer`` replaces with a short reply when the bot was @-mentioned.
NON_ANSWER_VERDICTS = ("ignored: chitchat", "ignored: off-topic")


class Bot:
    def __init__(self, services: Services, database: Database, adapters: list[Adapter]) -> None:
        self.services = services
        self.config = services.config
        self.db = database
        self.adapters = {adapter.name: adapter for adapter in adapters}
        # What middlewares may reach beyond the turn (the gate: budgets, commands, deletes).
        services.database = database
        services.adapters = self.adapters
        self.pipelines: dict[str, Pipeline] = build_pipelines(services)
        settings = self.config.queue
        self.queues = ConversationQueues(
            self._handle,
            max_concurrent=settings.max_concurrent_conversations,
            max_pending=settings.max_pending_per_conversation,
            debounce_seconds=settings.debounce_seconds,
        )
        self.outcomes = Outcomes(database)
        self.outbox = Outbox(
            database, self.outcomes, self.adapters, self.config.outbox, services.clock
        )
        self.holds = Holds(
            database,
            self.outcomes,
            self.outbox,
            services.clock,
            lambda conversation_id: self.pipeline_for(conversation_id).middlewares,
        )
        self.inbox = Inbox(database, self.outcomes, self._enqueue, services.clock)
        self.recovery = Recovery(
            database,
            self.outcomes,
            self.outbox,
            self.holds,
            self._enqueue,
            settings,
            services.clock,
            platforms=self.adapters,
            in_flight=self.in_flight,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, recover: bool = True) -> None:
        """Load models, resume what a crash left unfinished, then start receiving."""
        await self.services.warm_up()
        for pipeline in {id(p): p for p in self.pipelines.values()}.values():
            await pipeline.warm_up()
        if recover:
            await self.recovery.resume()
        for adapter in self.adapters.values():
            await adapter.start(self.inbox)
        self.outbox.adapters_ready.set()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop receiving, give messages in flight a moment to finish, then cancel the rest
        (they stay `processing` in the database and are resumed at the next start)."""
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
        self.holds.cancel()
        await self.outbox.cancel()
        await self.services.close()

    async def join(self) -> None:
        """Wait until every queued message and pending send is done (for tests and `ask`);
        held replies wait for their time (``release_held``)."""
        while True:
            await self.inbox.join()
            await self.queues.join()
            if not self.outbox.busy:
                return
            await self.outbox.join()

    def in_flight(self, message_id: int) -> bool:
        """Whether this worker holds the message: queued, in the pipeline, or being sent."""
        return message_id in self.queues or message_id in self.outbox

    # -- queueing and handling ----------------------------------------------------------------

    def _enqueue(self, key: str, item: Queued) -> None:
        if not self.queues.put(key, item):
            limit = self.config.queue.max_pending_per_conversation
            self.outbox.spawn(
                self.outcomes.finish(
                    [item.message_id],
                    MessageStatus.IGNORED,
                    f"ignored: overloaded ({limit} messages already waiting in this conversation)",
                    [],
                )
            )

    def pipeline_for(self, conversation_id: str) -> Pipeline:
        return self.pipelines.get(conversation_id, self.pipelines[""])

    async def release_held(self) -> int:
        """Post (or withdraw) the held replies whose time has come on the bot's clock."""
        return await self.holds.release_due(self.adapters)

    async def _handle(self, burst: list[Queued]) -> None:
        resumed = {item.message_id: item.recovered for item in burst if item.recovered}
        ids = await self.db.run(repo.claim, [item.message_id for item in burst], list(resumed))
        if not ids:
            return  # answered already (queued twice): nothing to do
        primary = ids[0]
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
            trace=[TraceStep("recovered", verdict=resumed[i]) for i in ids if i in resumed],
        )
        if len(ids) > 1:
            await self.outcomes.finish(
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
            if isinstance(exc, LLMError):  # the model failed; its message says how and why
                log.warning("message #%d failed: %s", primary, exc)
            else:
                log.exception("message #%d: pipeline failed", primary)
            await self.outcomes.finish(
                [primary],
                MessageStatus.FAILED,
                f"failed: {type(exc).__name__}: {exc}",
                ctx.trace_dicts(),
            )
            return
        finally:
            metrics.PIPELINE_SECONDS.observe(time.perf_counter() - started)
        if reply is None:
            reply = _non_answer(ctx)
        if reply is None:
            await self.outcomes.finish(
                [primary], MessageStatus.IGNORED, ctx.decision or "ignored", ctx.trace_dicts()
            )
            return
        now = self.services.clock()
        hold = ctx.hold_until if ctx.hold_until is not None and ctx.hold_until > now else None
        reply_id = await self.outbox.store_and_deliver(
            primary,
            message,
            reply,
            ctx.decision or "answered",
            ctx.trace_dicts(),
            kind=ctx.reply_kind,
            question=ctx.question,
            not_before=hold,
        )
        if hold is not None:
            self.holds.schedule(primary, reply_id, hold)
            self.outcomes.held(primary)


def _non_answer(ctx: TurnContext) -> Reply | None:
    """The group's short non-answer instead of silence, for someone who @-mentioned the bot
    with chitchat or an off-topic message (they asked the bot by name: silence looks broken)."""
    text = ctx.group.non_answer
    if not text or not ctx.message.mentioned_bot or ctx.decision not in NON_ANSWER_VERDICTS:
        return None
    step = TraceStep("non_answer", verdict="replied", detail={"instead_of": ctx.decision})
    ctx.trace.append(step)
    return Reply(text=text)
