"""Pack a prompt into a model's context window, measured with the model's own tokenizer.

The prompt is rendered from the templates and counted as a whole; while it is too long the
weakest retrieved chunks go first (lowest score), then the oldest chat history, then the one
remaining chunk is shortened, and only then the question. Chunks keep their retrieval order, so
the numbers the model cites ([1], [2]) match ``Packed.chunks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.context import Chunk, HistoryTurn
from bot.llm.protocol import ChatMessage, ContextTooLong

Render = Callable[[list[Chunk], list[HistoryTurn], str], list[ChatMessage]]
CHUNK_HEADER_TOKENS = 12  # "[3] path/to/file.md § Heading" and blank lines
MIN_CHUNK_TOKENS = 48  # a shortened chunk smaller than this is dropped instead


@dataclass(frozen=True)
class Packed:
    messages: list[ChatMessage]
    chunks: list[Chunk]
    history: list[HistoryTurn]
    question: str
    prompt_tokens: int
    budget: int
    dropped_chunks: int = 0
    dropped_history: int = 0
    shortened: bool = False

    def detail(self) -> dict[str, int | bool]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_budget": self.budget,
            "chunks_used": len(self.chunks),
            "chunks_dropped": self.dropped_chunks,
            "history_dropped": self.dropped_history,
            "shortened": self.shortened,
        }


def _shorten(text: str, tokens: int, keep_tokens: int) -> str:
    """Cut ``text`` (``tokens`` long) to about ``keep_tokens``, at a line or sentence end."""
    keep_chars = int(len(text) * keep_tokens / max(tokens, 1) * 0.95)
    cut = text[:keep_chars]
    for mark in ("\n", "。", ". "):
        at = cut.rfind(mark)
        if at > keep_chars * 0.6:
            return cut[: at + len(mark)].rstrip() + " …"
    return cut.rstrip() + " …"


def pack(
    render: Render,
    count_messages: Callable[[list[ChatMessage]], int],
    count_text: Callable[[str], int],
    *,
    budget: int,
    chunks: list[Chunk],
    history: list[HistoryTurn],
    question: str,
) -> Packed:
    """The longest prompt that fits in ``budget`` tokens. Raises ``ContextTooLong`` when even
    the question alone does not fit."""
    chunks = list(chunks)
    history = list(history)
    dropped_chunks = dropped_history = 0
    shortened = False
    for _ in range(64):  # each round removes something; this only bounds a broken counter
        messages = render(chunks, history, question)
        used = count_messages(messages)
        if used <= budget:
            return Packed(
                messages,
                chunks,
                history,
                question,
                used,
                budget,
                dropped_chunks,
                dropped_history,
                shortened,
            )
        over = used - budget
        if len(chunks) > 1:
            # Drop the weakest chunks whose estimated size covers the overflow, at least one.
            by_strength = sorted(range(len(chunks)), key=lambda i: (chunks[i].score, -i))
            drop: set[int] = set()
            freed = 0
            for i in by_strength[:-1]:
                drop.add(i)
                freed += count_text(chunks[i].text) + CHUNK_HEADER_TOKENS
                if freed >= over:
                    break
            chunks = [c for i, c in enumerate(chunks) if i not in drop]
            dropped_chunks += len(drop)
        elif history:
            freed = 0
            while history and freed < over:
                turn = history.pop(0)
                freed += count_text(turn.text) + count_text(turn.reply or "") + 8
                dropped_history += 1
        elif chunks:
            tokens = count_text(chunks[0].text)
            keep = tokens - over - 8
            if keep < MIN_CHUNK_TOKENS:
                chunks = []
                dropped_chunks += 1
            else:
                chunks = [replace(chunks[0], text=_shorten(chunks[0].text, tokens, keep))]
                shortened = True
        else:
            tokens = count_text(question)
            keep = tokens - over - 8
            if keep < 16:
                raise ContextTooLong(
                    f"the prompt needs {used} tokens without any reference material, "
                    f"more than the {budget} available"
                )
            question = _shorten(question, tokens, keep)
            shortened = True
    raise ContextTooLong(f"could not pack the prompt into {budget} tokens")
