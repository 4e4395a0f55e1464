"""Packing a prompt into a context window: weakest chunks first, then history, then shortening."""

from __future__ import annotations

import pytest

from bot.context import Chunk, HistoryTurn
from bot.llm.budget import pack
from bot.llm.protocol import ChatMessage, ContextTooLong, estimate_tokens

pytestmark = pytest.mark.unit


def render(chunks: list[Chunk], history: list[HistoryTurn], question: str) -> list[ChatMessage]:
    parts = [f"[{i}] {c.text}" for i, c in enumerate(chunks, 1)]
    parts += [f"{t.sender}: {t.text}" for t in history]
    parts.append(f"Q: {question}")
    return [{"role": "user", "content": "\n".join(parts)}]


def count(messages: list[ChatMessage]) -> int:
    return sum(estimate_tokens(m["content"]) for m in messages)


def chunk(name: str, score: float, words: int = 100) -> Chunk:
    return Chunk(text=" ".join([name] * words), source=f"{name}.md", score=score)


def test_everything_fits() -> None:
    chunks = [chunk("alpha", 0.9), chunk("beta", 0.5)]
    packed = pack(
        render, count, estimate_tokens, budget=10_000, chunks=chunks, history=[], question="why?"
    )
    assert packed.chunks == chunks and packed.dropped_chunks == 0
    assert packed.prompt_tokens == count(packed.messages) <= 10_000


def test_weakest_chunks_go_first_and_order_is_kept() -> None:
    chunks = [chunk("alpha", 0.9), chunk("beta", 0.2), chunk("gamma", 0.7), chunk("delta", 0.1)]
    history = [HistoryTurn("bob", "earlier question")]
    budget = count(render(chunks[:1] + chunks[2:3], history, "why?")) + 5
    packed = pack(
        render,
        count,
        estimate_tokens,
        budget=budget,
        chunks=chunks,
        history=history,
        question="why?",
    )
    assert [c.source for c in packed.chunks] == ["alpha.md", "gamma.md"]
    assert packed.dropped_chunks == 2 and packed.history == history
    assert packed.prompt_tokens <= budget


def test_history_goes_before_the_last_chunk_which_is_then_shortened() -> None:
    chunks = [chunk("alpha", 0.9, words=400)]
    history = [HistoryTurn("bob", "old " * 50), HistoryTurn("ann", "newer " * 50)]
    budget = 250
    packed = pack(
        render,
        count,
        estimate_tokens,
        budget=budget,
        chunks=chunks,
        history=history,
        question="why?",
    )
    assert packed.history == [] and packed.dropped_history == 2
    assert len(packed.chunks) == 1 and packed.shortened
    assert packed.chunks[0].text.endswith("…")
    assert packed.prompt_tokens <= budget


def test_question_alone_too_long_raises() -> None:
    with pytest.raises(ContextTooLong):
        pack(render, count, estimate_tokens, budget=2, chunks=[], history=[], question="why?")


def test_estimate_is_on_the_high_side_for_chinese_and_english() -> None:
    assert estimate_tokens("如何安装 mmdetection") == 6 + 4 + 1  # 1.5 a character, 12 / 2.5
    assert estimate_tokens("pip install mmdet==3.0") >= 6
