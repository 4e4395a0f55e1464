"""Clean the question up before anything scores it; drop messages with nothing to answer."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext
from knowledge.text import detect_language

# Adapters write mentions as "@Name" (each turns its platform's own form into that).
_MENTION = re.compile(r"(?<![\w.])@[\w\-.]+\s?")
# Runs of spaces inside a line; leading indentation is kept (it matters in pasted code).
_SPACES = re.compile(r"(?<=\S)[ \t\u3000]{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


class NormalizeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_chars: int = Field(2, ge=1, description="shorter messages are dropped as empty")
    max_chars: int = Field(4000, ge=16, description="longer ones are cut to this many characters")


class Normalize(BaseMiddleware[NormalizeOptions]):
    name = "normalize"
    Options = NormalizeOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options
        text = _MENTION.sub(" ", ctx.question)
        lines = [_SPACES.sub(" ", line).rstrip() for line in text.splitlines()]
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
        truncated = len(text) > options.max_chars
        text = text[: options.max_chars]
        ctx.language = detect_language(text)
        ctx.record(
            language=ctx.language,
            chars=len(text),
            merged=len(ctx.merged_message_ids),
            truncated=truncated,
        )
        if len(text) < options.min_chars:
            kind = ctx.message.raw.get("message_type", "")
            return ctx.ignore("empty", kind=kind or "text")
        ctx.question = text
        message = ctx.message
        in_group = message.conversation_type == "group"
        if ctx.group.require_mention and in_group and not message.mentioned_bot:
            return ctx.ignore("not-mentioned", require_mention=True)
        return await call_next(ctx)
