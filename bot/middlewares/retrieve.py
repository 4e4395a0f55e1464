"""Find the passages that answer the question: hybrid search over the knowledge base.

The best passages go on ``ctx.chunks`` (with their sources, for the prompt and the citations)
and, with every retriever's score and the ranker's strongest features, into the trace. A page
written in the other language is replaced by its translation when the knowledge base has one,
so answers quote and cite pages the asker reads. When even the best passage is not similar
enough to the question, the message stops here as ``ignored: no-knowledge``: answering without
knowledge is how a group bot makes things up.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel, ConfigDict, Field

from bot.config import ConfigError
from bot.context import Chunk, TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

log = logging.getLogger(__name__)


class RetrieveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int = Field(5, ge=1, le=50, description="passages handed to the answer")
    min_score: float = Field(
        0.15,
        ge=-1,
        le=1,
        description="the best passage's dense (cosine) similarity must reach this; else stop",
    )
    collection: str | None = Field(
        None, description="search only this collection (a group's knowledge_collection wins)"
    )
    question_language: bool = Field(
        True, description="hand over the translation in the question's language of a page"
    )


class Retrieve(BaseMiddleware[RetrieveOptions]):
    name = "retrieve"
    Options = RetrieveOptions

    async def warm_up(self) -> None:
        kb = self.services.knowledge
        if kb is None:
            source = self.services.config.source or "bot.yaml"
            raise ConfigError(
                f"{source}: pipeline: the retrieve middleware needs a knowledge base: "
                "list at least one folder under knowledge.sources"
            )
        status = await asyncio.to_thread(kb.status)
        if status.chunks == 0:
            log.warning(
                "the knowledge base is empty: every question will be ignored as no-knowledge "
                "until you run `huixiangdou-bot kb build`"
            )

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        kb = self.services.knowledge
        if kb is None:
            raise RuntimeError("retrieve runs without a knowledge base (warm_up was skipped)")
        options = self.options
        collection = ctx.group.knowledge_collection or options.collection
        # A follow-up ("and on Windows?") is searched with the question it follows.
        query = (
            ctx.question if ctx.follow_up is None else f"{ctx.follow_up.question}\n{ctx.question}"
        )
        language = ctx.language if options.question_language else None
        hits = await asyncio.to_thread(kb.search, query, options.k, collection, language)
        dense_max = max((h.scores.get("dense", 0.0) for h in hits), default=0.0)
        ctx.record(
            score=dense_max,
            threshold=options.min_score,
            best=hits[0].score if hits else None,
            bm25_max=max((h.scores.get("bm25", 0.0) for h in hits), default=0.0),
            collection=collection,
            follow_up=ctx.follow_up is not None,
            hits=[
                {
                    "source": h.source,
                    "title": h.title,
                    "score": round(h.score, 4),
                    "scores": {name: round(value, 4) for name, value in h.scores.items()},
                    **({"features": h.features} if h.features else {}),
                    **({"translation_of": h.translation_of} if h.translation_of else {}),
                }
                for h in hits
            ],
        )
        if not hits:
            return ctx.ignore("no-knowledge", why="the knowledge base has no passages")
        if dense_max < options.min_score:
            return ctx.ignore("no-knowledge")
        ctx.chunks.extend(
            Chunk(
                h.text,
                h.source,
                h.title,
                score=h.score,
                scores=dict(h.scores),
                chunk_id=h.chunk_id,
                alternatives=list(h.alternatives),
            )
            for h in hits
        )
        return await call_next(ctx)
