"""A middleware for the daemon tests, loaded by dotted path as a third-party plugin would be:
a fixed answer, so no model has to be loaded or trusted for its words."""

from __future__ import annotations

from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

ANSWER = "Use mim to install mmcv, then pip install mmdet."


class CannedAnswer(BaseMiddleware):
    name = "canned_answer"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        ctx.answer = ANSWER
        return await call_next(ctx)
