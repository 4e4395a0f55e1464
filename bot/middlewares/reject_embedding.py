"""Stay silent on chitchat: the calibrated gate over knowledge-base similarity and examples.

The gates (``knowledge.rejection``) are fitted from the admin's good/bad example questions and
what the groups taught them, and stored beside the index. They are one object shared with the
daemon's learning job (``services.gates``): at start-up this middleware loads them, fitting
them first if missing or stale; a refit by the job is in use from the next message on. A group
with a gate of its own is scored by it, every other group by the global one.

The threshold is the calibrated one, raised by ``ctx.strictness`` as the group's reply budget
drains (the gate middleware sets it); both are in the trace. A follow-up to one of the bot's
answers is not scored again: it is a question by definition.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel, ConfigDict, Field

from bot.config import ConfigError
from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext
from bot.services import Services
from knowledge.rejection.examples import ExamplesError
from knowledge.rejection.gate import RejectionGate
from knowledge.rejection.gates import RejectionGates
from knowledge.rejection.store import Decision

log = logging.getLogger(__name__)

# Messages scored in one embedding batch at most.
BATCH = 256


class RejectEmbeddingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float | None = Field(
        None, description="overrides the calibrated threshold (for experiments; prefer examples)"
    )


class RejectEmbedding(BaseMiddleware[RejectEmbeddingOptions]):
    name = "reject.embedding"
    Options = RejectEmbeddingOptions

    def __init__(self, services: Services, options: RejectEmbeddingOptions) -> None:
        super().__init__(services, options)
        self._pending: list[tuple[RejectionGate, str, bool, asyncio.Future[Decision]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def gates(self) -> RejectionGates:
        if self.services.gates is None:
            config = self.services.config
            raise ConfigError(
                f"{config.source or 'bot.yaml'}: pipeline: reject.embedding needs a knowledge "
                "base: add a 'knowledge:' section with at least one source"
            )
        return self.services.gates

    @property
    def gate(self) -> RejectionGate:
        """The global gate."""
        return self.gates.global_gate

    async def warm_up(self) -> None:
        try:
            await asyncio.to_thread(self.gates.load)
        except (ExamplesError, ValueError) as exc:
            source = self.services.config.source or "bot.yaml"
            raise ConfigError(f"{source}: rejection: cannot calibrate the gate: {exc}") from None

    async def decide(
        self, gate: RejectionGate, queries: list[str], mentioned: list[bool]
    ) -> list[Decision]:
        """Score messages in one batch: one embedding call and one knowledge-base call."""
        return await asyncio.to_thread(gate.decide, queries, mentioned)

    async def _decide_batched(
        self, gate: RejectionGate, question: str, mentioned: bool
    ) -> Decision:
        """Messages that arrive together are scored together (``classify`` sends thousands)."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((gate, question, mentioned, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the messages that arrived in the same tick queue up
        while self._pending:
            gate = self._pending[0][0]
            batch = [item for item in self._pending if item[0] is gate][:BATCH]
            taken = {id(item) for item in batch}
            self._pending = [item for item in self._pending if id(item) not in taken]
            try:
                decisions = await self.decide(gate, [b[1] for b in batch], [b[2] for b in batch])
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), decision in zip(batch, decisions, strict=True):
                if not future.done():
                    future.set_result(decision)

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if ctx.follow_up is not None:
            ctx.record(follow_up=ctx.follow_up.message_id)
            return await call_next(ctx)
        gate = self.gates.for_group(ctx.message.conversation_id)
        decision = await self._decide_batched(gate, ctx.question, ctx.message.mentioned_bot)
        calibrated = self.options_for(ctx).threshold
        if calibrated is None:
            calibrated = decision.threshold
        threshold = ctx.raised(calibrated)
        ctx.confidence, ctx.threshold = decision.score, threshold
        detail = {
            **decision.trace_detail(),
            "own_gate": gate is not self.gates.global_gate,
            "calibrated_threshold": round(calibrated, 4),
            "strictness": ctx.strictness,
        }
        if decision.score < threshold:
            return ctx.ignore("off-topic", score=decision.score, threshold=threshold, **detail)
        ctx.record(score=decision.score, threshold=threshold, **detail)
        return await call_next(ctx)
