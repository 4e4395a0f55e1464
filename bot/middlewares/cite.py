"""Choose the references for a reply: the passages the answer actually used, each source once.

The generate prompt numbers the chunks [1], [2] ...; when the answer cites those numbers, the
references are exactly the cited chunks, and the numbers in the text are rewritten to match the
reference list (after merging chunks of the same source and heading). When the answer cites
nothing, the chunks it overlaps with most are kept. Rendering stays in the adapters: each formats
``Reply.references`` its own way (``Reply.render_plain`` is the fallback).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from bot.context import Chunk, TurnContext
from bot.message import Reference, Reply
from bot.pipeline import BaseMiddleware, CallNext
from knowledge.text import overlap

# [1], [1, 3], [1][2], 【1】
_MARKER = re.compile(r"[\[【]\s*(\d{1,2}(?:\s*[,，、]\s*\d{1,2})*)\s*[\]】]")
_DUPLICATE_MARKERS = re.compile(r"(\[\d+\])(?:\s*\1)+")


class CiteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_references: int = Field(3, ge=0, description="at most this many references per reply")
    min_overlap: float = Field(
        0.2,
        ge=0,
        le=1,
        description="without [n] markers, keep chunks sharing at least this share of the "
        "answer's terms",
    )


def _key(chunk: Chunk) -> tuple[str, str]:
    return (chunk.url or chunk.source, chunk.title)


class Cite(BaseMiddleware[CiteOptions]):
    name = "cite"
    Options = CiteOptions

    def select(self, answer: str, chunks: list[Chunk]) -> tuple[list[int], str]:
        """Indexes (0-based, in citation order) of the chunks the answer used, and how they
        were found."""
        cited: list[int] = []
        for match in _MARKER.finditer(answer):
            for number in re.split(r"[,，、]", match.group(1)):
                index = int(number) - 1
                if 0 <= index < len(chunks) and index not in cited:
                    cited.append(index)
        if cited:
            return cited, "markers"
        scored = [(overlap(answer, c.text), i) for i, c in enumerate(chunks)]
        kept = sorted(
            (i for share, i in scored if share >= self.options.min_overlap and share > 0),
            key=lambda i: -scored[i][0],
        )
        return kept, "overlap"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        answer = ctx.answer or ""
        if not answer or not ctx.chunks or self.options.max_references == 0:
            ctx.record(references=0)
            return await call_next(ctx)
        used, method = self.select(answer, ctx.chunks)
        references: list[Reference] = list(ctx.references)
        number_of: dict[int, int] = {}  # chunk index -> 1-based reference number
        for index in used:
            chunk = ctx.chunks[index]
            existing = next(
                (n for n, ref in enumerate(references, 1) if _key_of(ref) == _key(chunk)), None
            )
            if existing is None:
                if len(references) >= self.options.max_references:
                    continue
                references.append(chunk.reference())
                existing = len(references)
            number_of[index] = existing

        def renumber(match: re.Match[str]) -> str:
            numbers: list[int] = []
            for number in re.split(r"[,，、]", match.group(1)):
                ref = number_of.get(int(number) - 1)
                if ref is not None and ref not in numbers:
                    numbers.append(ref)
            return "".join(f"[{n}]" for n in numbers)

        text = _MARKER.sub(renumber, answer)
        text = _DUPLICATE_MARKERS.sub(r"\1", text)
        text = re.sub(r"[ \t]+([.,;:!?。，；：！？])", r"\1", text).strip()
        ctx.answer = text
        ctx.references = references
        ctx.record(
            references=len(references),
            method=method,
            cited=[i + 1 for i in used],
            sources=[ref.url or ref.source for ref in references],
        )
        return await call_next(ctx)


def _key_of(reference: Reference) -> tuple[str, str]:
    return (reference.url or reference.source, reference.title)
