"""Ask the chat model for an answer from the prompt templates, the chunks and the history."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.context import TurnContext
from bot.llm.base import ChatMessage
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

PROMPT_VARIABLES = {"bot_name", "topic", "question", "chunks", "history"}


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_tokens: int | None = Field(None, ge=1, description="defaults to llm.max_tokens")
    use_history: bool = True


class Generate(BaseMiddleware[GenerateOptions]):
    name = "generate"
    Options = GenerateOptions

    async def warm_up(self) -> None:
        for template in ("system", "generate"):
            self.services.prompts.check(template, PROMPT_VARIABLES)

    def messages(self, ctx: TurnContext) -> list[ChatMessage]:
        options = self.options
        variables = {
            "bot_name": ctx.config.bot.name,
            "topic": ctx.group.topic or "",
            "question": ctx.question,
            "chunks": ctx.chunks,
            "history": ctx.history if options.use_history else [],
        }
        prompts = self.services.prompts
        return [
            {"role": "system", "content": prompts.render("system", ctx.language, **variables)},
            {"role": "user", "content": prompts.render("generate", ctx.language, **variables)},
        ]

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options
        llm = self.services.llm
        completion = await llm.complete(self.messages(ctx), max_tokens=options.max_tokens)
        ctx.answer = completion.text.strip()
        ctx.references.extend(
            c.reference() for c in ctx.chunks if c.reference() not in ctx.references
        )
        ctx.record(
            model=completion.model or llm.name,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
        )
        return await call_next(ctx)
