"""Ask the chat model for an answer from the prompt templates, the chunks and the history.

The prompt is packed to the context of the model that will answer (bot.llm.budget), with the
weakest chunks dropped first. A hybrid model names the backends to try in order; when the first
fails before its first token, the prompt is packed again for the next one. The answer is
streamed, so the trace can say how long the first token took and how fast the rest came.

Nothing is passed on until the answer is whole. A broken one (a stream cut off, junk text, a
model process that died mid-answer: ``BrokenAnswer``) is asked for once more, from the first
route again; a second failure fails the message with the reason. An answer that reached
``max_tokens`` before it ended (``Truncated``) is not posted: the bot stays silent with
``ignored: truncated`` (a cut-off answer reads as a wrong one; raise ``max_tokens`` when the
trace shows it often). Token counts and the finish reason are the backend's own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.context import Chunk, HistoryTurn, TurnContext
from bot.llm.budget import Packed, pack
from bot.llm.hybrid import stream_with_fallback
from bot.llm.protocol import (
    BrokenAnswer,
    ChatMessage,
    ChatModel,
    Truncated,
    collect_notes,
    context_length,
    count_message_tokens,
    count_tokens,
    routes_for,
)
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

log = logging.getLogger(__name__)

PROMPT_VARIABLES = {"bot_name", "topic", "question", "chunks", "history"}


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_tokens: int | None = Field(None, ge=1, description="defaults to llm.max_tokens")
    temperature: float | None = Field(None, ge=0, le=2, description="defaults to llm.temperature")
    use_history: bool = True
    reserve_tokens: int = Field(32, ge=0, description="context left free beyond the answer")


class Generate(BaseMiddleware[GenerateOptions]):
    name = "generate"
    Options = GenerateOptions
    # Called with each piece of the answer as it arrives (benchmarks; live-updating replies).
    on_token: Callable[[str], None] | None = None

    async def warm_up(self) -> None:
        for template in ("system", "generate"):
            self.services.prompts.check(template, PROMPT_VARIABLES)

    @property
    def max_tokens(self) -> int:
        return self.options.max_tokens or self.services.config.llm.max_tokens

    def render(
        self, ctx: TurnContext, chunks: list[Chunk], history: list[HistoryTurn], question: str
    ) -> list[ChatMessage]:
        variables = {
            "bot_name": ctx.config.bot.name,
            "topic": ctx.group.topic or "",
            "question": question,
            "chunks": chunks,
            "history": history,
        }
        prompts = self.services.prompts
        return [
            {"role": "system", "content": prompts.render("system", ctx.language, **variables)},
            {"role": "user", "content": prompts.render("generate", ctx.language, **variables)},
        ]

    def pack_for(self, model: ChatModel, ctx: TurnContext) -> Packed:
        budget = context_length(model) - self.max_tokens - self.options.reserve_tokens
        return pack(
            lambda chunks, history, question: self.render(ctx, chunks, history, question),
            lambda messages: count_message_tokens(model, messages),
            lambda text: count_tokens(model, text),
            budget=budget,
            chunks=ctx.chunks,
            history=ctx.history if self.options.use_history else [],
            question=ctx.question,
        )

    async def stream(self, ctx: TurnContext) -> AsyncIterator[str]:
        """The answer, piece by piece, from the first backend that delivers one."""
        started = time.perf_counter()
        llm = self.services.llm
        full = self.render(
            ctx, ctx.chunks, ctx.history if self.options.use_history else [], ctx.question
        )
        routes = routes_for(llm, "answer", count_message_tokens(llm, full), self.max_tokens)
        packed: dict[str, Packed] = {}

        def start(model: ChatModel) -> AsyncIterator[str]:
            packed["last"] = fitted = self.pack_for(model, ctx)
            return model.stream(
                fitted.messages, max_tokens=self.max_tokens, temperature=self.options.temperature
            )

        first: float | None = None
        async for piece in stream_with_fallback(routes, start):
            if first is None:
                first = time.perf_counter()
                ctx.chunks = packed["last"].chunks  # the numbering the model saw
            if self.on_token is not None:
                self.on_token(piece)
            yield piece
        done = time.perf_counter()
        if "last" in packed:
            ctx.record(**packed["last"].detail())
        ctx.record(
            ttft_ms=round(((first or done) - started) * 1000, 1),
            generation_ms=round((done - started) * 1000, 1),
        )

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if ctx.answer:
            # An earlier middleware answered (extract, without a capable model).
            ctx.record(skipped="already answered")
            return await call_next(ctx)
        retried: list[str] = []
        while True:
            with collect_notes() as notes:
                try:
                    pieces = [piece async for piece in self.stream(ctx)]
                except Truncated as exc:
                    noted = {**self._noted(notes, retried), "finish_reason": "length"}
                    return ctx.ignore(
                        "truncated",
                        why=f"{exc}; raise middleware.generate.max_tokens or llm.max_tokens",
                        max_tokens=self.max_tokens,
                        **noted,
                    )
                except BrokenAnswer as exc:
                    if retried:
                        ctx.record(**self._noted(notes, retried))
                        raise
                    log.warning("message #%d: %s; asking once more", ctx.message_id, exc)
                    retried.append(str(exc))
                    continue
            break
        answer = "".join(pieces).strip()
        completion_tokens = notes.pop("completion_tokens", len(pieces))
        detail = ctx.step.detail
        decode_ms = detail["generation_ms"] - detail["ttft_ms"]
        ctx.record(
            completion_tokens=completion_tokens,
            finish_reason=notes.pop("finish_reason", "stop"),
            tokens_per_s=round(completion_tokens / (decode_ms / 1000), 1)
            if decode_ms > 0
            else None,
            **self._noted(notes, retried),
        )
        ctx.answer = answer
        return await call_next(ctx)

    def _noted(self, notes: dict[str, Any], retried: list[str]) -> dict[str, Any]:
        """The model that answered and what the backends reported, for the trace."""
        noted = {"model": notes.get("route", self.services.llm.name)}
        noted.update({k: v for k, v in notes.items() if k != "route"})
        if retried:
            noted["retried_after"] = retried
        return noted
