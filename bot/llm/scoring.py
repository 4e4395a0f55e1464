"""Read a 0-10 score from a chat model, robustly: ``await score(llm, messages)``.

Gate and self-check middlewares ask the model "how well does X hold, from 0 to 10?". Small models
wrap the number in words, add a second number, or answer something else entirely. So:

- a local llama.cpp model is constrained by a grammar to answer a bare integer from 0 to 10, and
  the score is the expected value under the model's own next-token probabilities for the digits
  (a 60/40 split between 9 and 10 reads as 9.4, not as whichever token won);
- any other model is asked for a short answer at temperature 0, and the text is parsed: one clear
  number (``7``, ``Score: 7``, ``7/10``, ``８分``) or nothing;
- a hybrid model scores on the backend its routing picks, falling back to the other.

An answer with no clear score, or a model that fails, gives ``Score(value=None)``: the caller
decides what "unsure" means for it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from bot.llm.protocol import (
    BrokenAnswer,
    ChatMessage,
    ChatModel,
    LLMError,
    count_message_tokens,
    note,
    note_append,
    routes_for,
)

log = logging.getLogger(__name__)

# GBNF for llama.cpp: a bare integer from 0 to 10, optionally after one space (SentencePiece
# vocabularies spell a number at the start of a reply as "▁7").
SCORE_GRAMMAR = r'root ::= " "? ("10" | [0-9])'

Method = Literal["probabilities", "text", "unreadable", "error"]


@dataclass(frozen=True, slots=True)
class Score:
    """A 0-10 score, or ``value=None`` when the model gave none."""

    value: float | None
    text: str = ""
    method: Method = "text"
    probabilities: dict[int, float] = field(default_factory=dict)
    # Share of the model's next-token probability that fell on a score at all (local models):
    # low when the model "wanted" to say something else.
    mass: float | None = None
    model: str = ""

    @property
    def readable(self) -> bool:
        return self.value is not None

    def detail(self) -> dict[str, Any]:
        """A compact form for the trace."""
        out: dict[str, Any] = {
            "score": None if self.value is None else round(self.value, 2),
            "method": self.method,
            "answer": self.text.strip()[:60],
        }
        if self.mass is not None:
            out["mass"] = round(self.mass, 3)
        if self.model:
            out["model"] = self.model
        return out


@runtime_checkable
class Scoring(Protocol):
    """A backend with its own robust way to score (grammar and token probabilities)."""

    async def score(self, messages: list[ChatMessage]) -> Score: ...


# -- reading a score from text ---------------------------------------------------------------

_SCALE = re.compile(
    r"[(（\[]?\s*(?<![\d.])0\s*(?:-|–|—|~|～|to|到|至)\s*10(?![\d.])\s*分?\s*[)）\]]?"
    r"|满分\s*(?:是|为)?\s*10\s*分?",
    re.IGNORECASE,
)
_OUT_OF_TEN = re.compile(
    r"(?<![\d.\-])(\d+(?:\.\d+)?)\s*(?:/|out of|of|分?\s*[(（]?\s*满分)\s*10(?![\d.])",
    re.IGNORECASE,
)
_POINTS = re.compile(r"(?<![\d.\-])(\d+(?:\.\d+)?)\s*分")
_NUMBER = re.compile(r"(?<![\d.\-])-?\d+(?:\.\d+)?(?![\d])")
_CHINESE = dict(zip("零一二三四五六七八九十", range(11), strict=True))
_CHINESE_POINTS = re.compile(r"(?<![零一二三四五六七八九十])([零一二三四五六七八九十])\s*分")


def parse_score(text: str) -> float | None:
    """The single score from 0 to 10 in ``text``, or None when there is none or it is unclear.

    Reads "7", "7.", "**7**", "Score: 7", "7/10", "7 out of 10", "８分", "七分", "7 (on a 0-10
    scale)"; refuses "", "yes", "12", "-3", "between 3 and 7".
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        return None
    text = _SCALE.sub(" ", text)
    for pattern in (_OUT_OF_TEN, _POINTS):
        found = pattern.findall(text)
        if len(set(found)) == 1:
            return _in_range(float(found[0]))
        if found:
            return None
    numbers = _NUMBER.findall(text)
    if not numbers:
        chinese = _CHINESE_POINTS.findall(text)
        return float(_CHINESE[chinese[0]]) if len(chinese) == 1 else None
    if len(set(numbers)) == 1 or text.startswith(numbers[0]):
        # One number (maybe repeated), or a leading one followed by an explanation.
        return _in_range(float(numbers[0]))
    return None


def _in_range(value: float) -> float | None:
    return value if 0 <= value <= 10 else None


def score_from_text(text: str, model: str = "") -> Score:
    value = parse_score(text)
    return Score(value, text, "text" if value is not None else "unreadable", model=model)


def score_from_probabilities(
    probabilities: dict[int, float], mass: float, text: str, model: str = ""
) -> Score:
    """The expected score under ``probabilities`` (P(score = k), any scale), falling back to the
    constrained answer when the model put no probability on a score at all."""
    total = sum(probabilities.values())
    if total <= 0:
        return score_from_text(text, model)
    normalised = {k: p / total for k, p in sorted(probabilities.items()) if p > 0}
    expected = sum(k * p for k, p in normalised.items())
    return Score(expected, text, "probabilities", normalised, mass, model)


# -- scoring with any chat model ---------------------------------------------------------------


async def score(llm: ChatModel, messages: list[ChatMessage], *, max_tokens: int = 8) -> Score:
    """Ask ``llm`` for a 0-10 score. A broken answer (a model process that died mid-call, a
    garbled response) is asked for once more. Never raises for a model failure: that gives
    ``Score(None, method="error")`` with the reason in ``text``."""
    prompt_tokens = count_message_tokens(llm, messages)
    routes = routes_for(llm, "score", prompt_tokens, max_tokens)
    failures: list[str] = []
    for route in routes:
        try:
            result = await _score_with(route.model, messages, max_tokens)
        except LLMError as exc:
            failures.append(f"{route.model.name}: {exc}")
            note_append("fallbacks", failures[-1])
            continue
        if len(routes) > 1:
            note(route=route.model.name, route_reason=route.reason)
        return result
    log.warning("scoring failed on every model: %s", "; ".join(failures))
    return Score(None, "; ".join(failures), "error")


async def _score_with(model: ChatModel, messages: list[ChatMessage], max_tokens: int) -> Score:
    try:
        return await _score_once(model, messages, max_tokens)
    except BrokenAnswer as exc:
        note_append("retries", f"{model.name}: {exc}")
        return await _score_once(model, messages, max_tokens)


async def _score_once(model: ChatModel, messages: list[ChatMessage], max_tokens: int) -> Score:
    if isinstance(model, Scoring):
        return await model.score(messages)
    completion = await model.complete(messages, max_tokens=max_tokens, temperature=0.0)
    return score_from_text(completion.text, completion.model or model.name)
