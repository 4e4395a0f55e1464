"""Third-party middlewares for the platforms' tests, loaded by dotted path like any plugin
would be: a stand-in retriever that supplies chunks and a stand-in citer that turns them into the
reply's references (so replies carry citations whatever the built-ins do), a gate that lets
only questions through, and a canned answer for daemon tests."""

from __future__ import annotations

from bot.context import Chunk, TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

# The daemon tests' answer: no model has to be loaded or trusted for its words.
CANNED_ANSWER = "Use mim to install mmcv, then pip install mmdet."

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


class CiteAll(BaseMiddleware):
    """After the answer: every static chunk becomes a reference, in order."""

    name = "cite_all"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        ctx.references = [chunk.reference() for chunk in CHUNKS]
        return await call_next(ctx)


class QuestionsOnly(BaseMiddleware):
    """Chitchat filter for tests: a message without a question mark is not a question."""

    name = "questions_only"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        if "?" not in ctx.question and "？" not in ctx.question:
            return ctx.ignore("chitchat")
        return await call_next(ctx)


class CannedAnswer(BaseMiddleware):
    """Answers without a model (for daemon tests, where the bundled model's words vary)."""

    name = "canned_answer"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        ctx.answer = CANNED_ANSWER
        return await call_next(ctx)


# bot.yaml's pipeline for the platforms' tests: questions only, the model answers from the
# static chunks, every chunk cited.
PIPELINE = [
    "normalize",
    f"{__name__}:QuestionsOnly",
    f"{__name__}:StaticChunks",
    "generate",
    f"{__name__}:CiteAll",
]
# The daemon tests' pipeline: the canned answer, every chunk cited.
CANNED_PIPELINE = [
    "normalize",
    f"{__name__}:StaticChunks",
    f"{__name__}:CannedAnswer",
    f"{__name__}:CiteAll",
]
