"""Third-party middlewares for the Feishu tests, loaded by dotted path like any plugin would
be: a stand-in retriever that supplies chunks (so replies carry citations), and a gate that
lets only questions through."""

from __future__ import annotations

from bot.context import Chunk, TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

CHUNKS = [
    Chunk(
        text="pip install mmdet; for CUDA 12 install mmcv from the matching wheel index.",
        source="docs/en/get_started.md",
        title="Installation",
    ),
    Chunk(
        text="The official guide lists the CUDA and PyTorch versions that work together.",
        source="https://mmdetection.readthedocs.io/en/latest/get_started.html",
        title="Get started",
        url="https://mmdetection.readthedocs.io/en/latest/get_started.html",
    ),
]


class StaticChunks(BaseMiddleware):
    """Gives every question the same two passages, one from a file and one from the web."""

    name = "static_chunks"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        ctx.chunks = list(CHUNKS)
        ctx.record(chunks=len(ctx.chunks))
        return await call_next(ctx)


class QuestionsOnly(BaseMiddleware):
    """Chitchat filter for tests: a message without a question mark is not a question."""

    name = "questions_only"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if "?" not in ctx.question and "？" not in ctx.question:
            return ctx.ignore("chitchat")
        return await call_next(ctx)
