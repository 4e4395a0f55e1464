"""Self-check before posting: is the answer grounded in the chunks, on the question, and safe?

Each check is one 0-10 score from the chat model (bot.llm.scoring: grammar-constrained with
token probabilities on a local model, parsed text elsewhere) against its own threshold. The first
check that fails stops the message with ``ignored: unsure``; the trace names the check, its score
and threshold, and what the model said. A wrong answer in a group chat costs more than silence.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.context import TurnContext
from bot.llm.budget import pack
from bot.llm.protocol import (
    ChatMessage,
    collect_notes,
    context_length,
    count_message_tokens,
    routes_for,
)
from bot.llm.protocol import count_tokens as count_text_tokens
from bot.llm.scoring import score
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

Check = Literal["grounded", "relevant", "safe"]
CHECKS: tuple[Check, ...] = ("grounded", "relevant", "safe")
PROMPT_VARIABLES = {"bot_name", "topic", "question", "answer", "chunks"}
WHY = {
    "grounded": "the answer is not supported by the reference material",
    "relevant": "the answer does not address the question",
    "safe": "the answer is not safe to post",
}


class VerifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    checks: list[Check] = Field(
        default_factory=lambda: list(CHECKS),
        description="checks to run, in order; the first that fails silences the bot",
    )
    grounded_threshold: float = Field(6.0, ge=0, le=10)
    relevant_threshold: float = Field(5.0, ge=0, le=10)
    safe_threshold: float = Field(7.0, ge=0, le=10)
    on_unreadable: Literal["silent", "post"] = Field(
        "silent", description="what to do when the model gives no readable score"
    )
    max_answer_chars: int = Field(3000, ge=100)


class Verify(BaseMiddleware[VerifyOptions]):
    name = "verify"
    Options = VerifyOptions

    async def warm_up(self) -> None:
        for check in self.options.checks:
            self.services.prompts.check(f"verify_{check}", PROMPT_VARIABLES)

    def threshold(self, check: Check) -> float:
        value: float = getattr(self.options, f"{check}_threshold")
        return value

    def messages(self, check: Check, ctx: TurnContext, answer: str) -> list[ChatMessage]:
        llm = self.services.llm
        variables: dict[str, Any] = {
            "bot_name": ctx.config.bot.name,
            "topic": ctx.group.topic or "",
            "answer": answer,
        }

        def render(chunks: Any, _history: Any, question: str) -> list[ChatMessage]:
            prompt = self.services.prompts.render(
                f"verify_{check}", ctx.language, chunks=chunks, question=question, **variables
            )
            return [{"role": "user", "content": prompt}]

        # Fit the prompt to the model that scores first (a hybrid's local model, usually).
        full = render(ctx.chunks, [], ctx.question)
        first = routes_for(llm, "score", count_message_tokens(llm, full), 8)[0].model
        packed = pack(
            render,
            lambda messages: count_message_tokens(first, messages),
            lambda text: count_text_tokens(first, text),
            budget=context_length(first) - 16,
            chunks=ctx.chunks,
            history=[],
            question=ctx.question,
        )
        return packed.messages

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        answer = (ctx.answer or "").strip()[: self.options.max_answer_chars]
        if not answer:
            return await call_next(ctx)  # nothing to check: the pipeline stays silent anyway
        results: dict[str, Any] = {}
        lowest: tuple[float, float] | None = None
        for check in self.options.checks:
            threshold = self.threshold(check)
            if check == "grounded" and not ctx.chunks:
                results[check] = "skipped: no reference material"
                continue
            with collect_notes() as notes:
                result = await score(self.services.llm, self.messages(check, ctx, answer))
            results[check] = {**result.detail(), "threshold": threshold, **notes}
            if result.value is None:
                if self.options.on_unreadable == "silent":
                    return ctx.ignore(
                        "unsure", why=f"{check}: no readable score", failed=check, checks=results
                    )
                continue
            if result.value < threshold:
                return ctx.ignore(
                    "unsure",
                    score=result.value,
                    threshold=threshold,
                    why=WHY[check],
                    failed=check,
                    checks=results,
                )
            if lowest is None or result.value - threshold < lowest[0] - lowest[1]:
                lowest = (result.value, threshold)
        if lowest is not None:
            ctx.record(score=lowest[0], threshold=lowest[1])
        ctx.record(checks=results)
        return await call_next(ctx)
