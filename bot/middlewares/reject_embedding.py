"""Stay silent on chitchat: the calibrated gate over knowledge-base similarity and examples.

The gate (``knowledge.rejection``) is fitted from the admin's good/bad example questions by
``huixiangdou-bot calibrate`` and stored beside the index. It is one object shared with the
daemon's re-calibration job (``services.gate``): at start-up this middleware loads it, fitting
it first if it is missing or stale; a refit by the job is in use from the next message on.
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
        self._pending: list[tuple[str, bool, asyncio.Future[Decision]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def gate(self) -> RejectionGate:
        if self.services.gate is None:
            config = self.services.config
            raise ConfigError(
                f"{config.source or 'bot.yaml'}: pipeline: reject.embedding needs a knowledge "
                "base: add a 'knowledge:' section with at least one source"
            )
        return self.services.gate

    async def warm_up(self) -> None:
        try:
            await asyncio.to_thread(self.gate.load)
        except (ExamplesError, ValueError) as exc:
            source = self.services.config.source or "bot.yaml"
            raise ConfigError(f"{source}: rejection: cannot calibrate the gate: {exc}") from None

    async def decide(self, queries: list[str], mentioned: list[bool]) -> list[Decision]:
        """Score messages in one batch: one embedding call and one knowledge-base call."""
        return await asyncio.to_thread(self.gate.decide, queries, mentioned)

    async def _decide_batched(self, question: str, mentioned: bool) -> Decision:
        """Messages that arrive together are scored together (``classify`` sends thousands)."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((question, mentioned, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the messages that arrived in the same tick queue up
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                decisions = await self.decide([b[0] for b in batch], [b[1] for b in batch])
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), decision in zip(batch, decisions, strict=True):
                if not future.done():
                    future.set_result(decision)

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        decision = await self._decide_batched(ctx.question, ctx.message.mentioned_bot)
        threshold = self.options.threshold
        if threshold is None:
            threshold = decision.threshold
        detail = {"gate": decision.kind, "features": decision.features}
        if decision.score < threshold:
            return ctx.ignore("off-topic", score=decision.score, threshold=threshold, **detail)
        ctx.record(score=decision.score, threshold=threshold, **detail)
        return await call_next(ctx)
