"""The `ChatModel` protocol: what every model backend offers the pipeline.

Every backend has ``warm_up``, ``complete``, ``stream`` and ``close``. Some have more, and the
callers check with ``isinstance`` against the small protocols below rather than assuming it:
``TokenCounting`` (a real tokenizer and a context length, for packing prompts), ``Scoring``
(a robust 0-10 score, see bot.llm.scoring) and ``Routing`` (a hybrid that picks a backend per
call). A scripted test model that only has the four methods still works everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, TypedDict, runtime_checkable

import knowledge.text as text_helpers

Task = Literal["answer", "score"]


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    model: str = ""


class ModelError(Exception):
    """The model cannot be found, read or loaded: a set-up problem the message explains."""


class LLMError(Exception):
    """One call to a model failed (after any retries); another backend may still answer."""


class RateLimited(LLMError):
    """The call would exceed the configured requests- or tokens-per-minute budget, or the
    server asked us to wait longer than we are willing to."""


class ContextTooLong(LLMError):
    """The prompt does not fit the model's context window."""


class BrokenAnswer(LLMError):
    """The answer came back incomplete or garbled: a stream cut off or without a finish reason,
    malformed chunks, junk text, a model process that died or hung mid-answer. Such text is
    never posted; asking once more may work."""


class Truncated(LLMError):
    """The answer reached ``max_tokens`` before it ended (finish reason ``length``): it is half
    an answer."""


class ModelUnavailable(LLMError):
    """The local model process kept crashing and is no longer restarted: no call is tried."""


@runtime_checkable
class ChatModel(Protocol):
    name: str

    async def warm_up(self) -> None:
        """Load weights or open connections; called once at start-up, never at import."""

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        """The answer in pieces. A stream that was not a whole answer raises at its end, after
        its pieces: ``Truncated`` at ``max_tokens``, ``BrokenAnswer`` when cut off or garbled.
        A backend notes the real ``finish_reason`` and ``completion_tokens`` (``note``)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class TokenCounting(Protocol):
    """A model that can count tokens the way it will see them."""

    context_length: int

    def count_tokens(self, text: str) -> int: ...

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens of the whole chat prompt, template markup included."""
        ...


@runtime_checkable
class HealthReporting(Protocol):
    """A model that runs somewhere that can be up or down (a supervised process): what
    ``/healthz`` and ``doctor`` show about it."""

    def health(self) -> dict[str, Any]: ...


class Route(NamedTuple):
    model: ChatModel
    reason: str


@runtime_checkable
class Routing(Protocol):
    """A model that is several backends: which to try, in order, for one call."""

    def routes(self, task: Task, prompt_tokens: int, max_tokens: int) -> list[Route]: ...


# -- token counts without a tokenizer -------------------------------------------------------

MESSAGE_OVERHEAD_TOKENS = 8  # role markers and separators of a typical chat template


def estimate_tokens(text: str) -> int:
    """A deliberately high token count for models whose tokenizer we do not have: 1.5 per CJK
    character (Chinese-trained vocabularies need 0.6-1, GPT-3.5's about 1.3) and one per 2.5
    other characters (identifiers, versions and symbols split finer than prose)."""
    return text_helpers.estimate_tokens(text, cjk_weight=1.5, chars_per_token=2.5)


def count_tokens(llm: Any, text: str) -> int:
    if isinstance(llm, TokenCounting):
        return llm.count_tokens(text)
    return estimate_tokens(text)


def count_message_tokens(llm: Any, messages: list[ChatMessage]) -> int:
    if isinstance(llm, TokenCounting):
        return llm.count_message_tokens(messages)
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def context_length(llm: Any, default: int = 4096) -> int:
    return llm.context_length if isinstance(llm, TokenCounting) else default


def routes_for(llm: ChatModel, task: Task, prompt_tokens: int, max_tokens: int) -> list[Route]:
    if isinstance(llm, Routing):
        return llm.routes(task, prompt_tokens, max_tokens)
    return [Route(llm, "the only configured model")]


# -- notes for the trace ----------------------------------------------------------------------

_notes: ContextVar[dict[str, Any] | None] = ContextVar("llm_notes", default=None)


@contextlib.contextmanager
def collect_notes() -> Iterator[dict[str, Any]]:
    """Collect what model backends report about the calls made inside this block (the route a
    hybrid chose and why, retries, waits) so a middleware can put it in the trace."""
    notes: dict[str, Any] = {}
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def note(**items: Any) -> None:
    """Report something about the current call; a no-op outside ``collect_notes``."""
    notes = _notes.get()
    if notes is not None:
        notes.update(items)


def note_append(key: str, value: Any) -> None:
    """Add to a list in the notes (fallbacks, retries: there may be several)."""
    notes = _notes.get()
    if notes is not None:
        notes.setdefault(key, []).append(value)
