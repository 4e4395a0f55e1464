"""Stay silent on chitchat: the calibrated gate over knowledge-base similarity and examples.

The gate (``knowledge.gate``) is fitted from the admin's good/bad example questions by
``huixiangdou-bot calibrate`` and stored beside the index. At start-up this middleware loads it,
fitting it first if it is missing or stale. The daemon's re-calibration job
(``knowledge.gate.jobs``) re-fits it when the examples or the index change; the middleware sees
the new file and loads it before the next message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from bot.config import ConfigError
from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

if TYPE_CHECKING:
    from bot.services import Services
    from knowledge.gate.calibrate import Calibrator
    from knowledge.gate.store import Decision, StoredGate

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

    _calibrator: Calibrator | None = None
    _gate: StoredGate | None = None
    _loaded_stamp: int = 0
    _flusher: asyncio.Task[None] | None = None

    def __init__(self, services: Services, options: RejectEmbeddingOptions) -> None:
        super().__init__(services, options)
        self._pending: list[tuple[str, bool, asyncio.Future[Decision]]] = []

    def calibrator(self) -> Calibrator:
        if self._calibrator is None:
            from knowledge.gate.calibrate import Calibrator

            config = self.services.config
            kb = self.services.knowledge
            if kb is None:
                raise ConfigError(
                    f"{config.source or 'bot.yaml'}: pipeline: reject.embedding needs a knowledge "
                    "base: add a 'knowledge:' section with at least one source"
                )
            settings = config.rejection.resolve(config.source.parent if config.source else None)
            self._calibrator = Calibrator(kb, settings, config.work_dir)
        return self._calibrator

    async def warm_up(self) -> None:
        from knowledge.gate.examples import ExamplesError

        calibrator = self.calibrator()
        loop = asyncio.get_running_loop()
        try:
            gate = await loop.run_in_executor(None, calibrator.current)
            # Load the example embedder now, not on the first message.
            await loop.run_in_executor(None, calibrator.space.embed, ["warm up"])
        except (ExamplesError, ValueError) as exc:
            source = self.services.config.source or "bot.yaml"
            raise ConfigError(f"{source}: rejection: cannot calibrate the gate: {exc}") from None
        self._use(gate)

    def _use(self, gate: StoredGate) -> None:
        self._gate = gate
        self._loaded_stamp = self._stamp()

    def _stamp(self) -> int:
        from knowledge.gate.store import META_FILE

        try:
            return (self.calibrator().directory / META_FILE).stat().st_mtime_ns
        except OSError:
            return 0

    async def _reload_if_refitted(self) -> None:
        """Pick up a gate that the re-calibration job (or `calibrate`) wrote since we loaded."""
        if self._gate is None or self._stamp() == self._loaded_stamp:
            return
        loop = asyncio.get_running_loop()
        gate = await loop.run_in_executor(None, self.calibrator().load)
        if gate is not None:
            log.info("loaded the re-calibrated rejection gate (%s)", gate.meta.get("created"))
            self._use(gate)

    async def refresh(self) -> bool:
        """Re-fit the gate now if the examples or the index changed; True when it was."""
        from knowledge.gate.jobs import recalibrate

        loop = asyncio.get_running_loop()
        refitted = await loop.run_in_executor(None, recalibrate, self.calibrator())
        await self._reload_if_refitted()
        return refitted

    async def decide(self, queries: list[str], mentioned: list[bool]) -> list[Decision]:
        """Score messages in one batch: one embedding call and one knowledge-base call."""
        if self._gate is None:
            await self.warm_up()
        gate, space = self._gate, self.calibrator().space
        assert gate is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, gate.decide, space, queries, mentioned)

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
        await self._reload_if_refitted()
        decision = await self._decide_batched(ctx.question, ctx.message.mentioned_bot)
        threshold = self.options.threshold
        if threshold is None:
            threshold = decision.threshold
        accept = decision.score >= threshold
        detail = {"gate": decision.kind, "features": decision.features}
        if not accept:
            return ctx.ignore("off-topic", score=decision.score, threshold=threshold, **detail)
        ctx.record(score=decision.score, threshold=threshold, **detail)
        return await call_next(ctx)
