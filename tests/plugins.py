"""Third-party-style middlewares for tests, loaded from bot.yaml by dotted path
(``tests.plugins:Sleep``), exactly as an admin would load their own package's middleware."""

from __future__ import annotations

import asyncio
import re

from pydantic import BaseModel, ConfigDict

from bot.context import Chunk, TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext


class SleepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 60.0


class Sleep(BaseMiddleware[SleepOptions]):
    """Hangs, so a test can kill the daemon while a message is being processed."""

    name = "sleep"
    Options = SleepOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        await asyncio.sleep(self.options.seconds)
        return await call_next(ctx)


class KeywordOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyword: str = "?"
    score: float = 0.5


class RequireKeyword(BaseMiddleware[KeywordOptions]):
    """Passes messages containing the keyword; the rest are ignored as chitchat."""

    name = "require_keyword"
    Options = KeywordOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if self.options.keyword not in ctx.question:
            return ctx.ignore("chitchat", score=0.0, threshold=self.options.score)
        ctx.record(score=1.0, threshold=self.options.score, keyword=self.options.keyword)
        return await call_next(ctx)


class Boom(BaseMiddleware[BaseModel]):
    name = "boom"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        raise ValueError("middleware exploded")


class NotAMiddleware:
    def __init__(self, services: object, options: object) -> None:
        pass


class ConfidenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = 0.5
    default: float = 0.9


_CONFIDENCE = re.compile(r"\(p=([01](?:\.\d+)?)\)")


class Confidence(BaseMiddleware[ConfidenceOptions]):
    """A stand-in for reject.embedding: the message says how sure the gate is, "(p=0.7)"
    (default 0.9), and it must reach the threshold raised by the group's reply budget; a
    follow-up is not scored."""

    name = "confidence"
    Options = ConfidenceOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if ctx.follow_up is not None:
            ctx.record(follow_up=ctx.follow_up.message_id)
            return await call_next(ctx)
        found = _CONFIDENCE.search(ctx.question)
        score = float(found.group(1)) if found else self.options.default
        threshold = ctx.raised(self.options.threshold)
        ctx.confidence, ctx.threshold = score, threshold
        if score < threshold:
            return ctx.ignore("off-topic", score=score, threshold=threshold)
        ctx.record(score=score, threshold=threshold, strictness=ctx.strictness)
        return await call_next(ctx)


class PassagesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Extra passages by question (a poisoned document, say), beside one harmless passage.
    by_question: dict[str, str] = {}


class Passages(BaseMiddleware[PassagesOptions]):
    """A stand-in for retrieve: one passage from the docs, and the given one for a question."""

    name = "passages"
    Options = PassagesOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        passage = "Install mmfoo with pip install mmfoo; export with tools/export.py."
        ctx.chunks.append(Chunk(passage, "docs/install.md", "Install"))
        if ctx.question in self.options.by_question:
            ctx.chunks.append(Chunk(self.options.by_question[ctx.question], "docs/notes.md"))
        return await call_next(ctx)


class StopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marker: str = "(nothing)"
    reason: str = "no-knowledge"


class Stop(BaseMiddleware[StopOptions]):
    """Stays silent with the given reason on messages carrying the marker (a stand-in for
    retrieve finding nothing)."""

    name = "stop"
    Options = StopOptions

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if self.options.marker in ctx.question:
            return ctx.ignore(self.options.reason)
        return await call_next(ctx)


class StaySilent(BaseMiddleware[BaseModel]):
    """Ignores every message: for tests that store many messages and need no answers."""

    name = "stay_silent"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        return ctx.ignore("silent")
