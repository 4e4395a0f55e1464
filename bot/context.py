"""What one turn of the pipeline knows, and the trace that explains its decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bot.config import Config, GroupSettings
from bot.message import Message, Reference, Reply


@dataclass(slots=True)
class TraceStep:
    """One middleware's part in a decision, as shown by `huixiangdou-bot trace`."""

    name: str
    verdict: str = "pass"
    score: float | None = None
    threshold: float | None = None
    ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Chunk:
    """A retrieved passage with where it came from, for the prompt and the citations."""

    text: str
    source: str
    title: str = ""
    url: str = ""
    score: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)

    def reference(self) -> Reference:
        return Reference(source=self.source, title=self.title, url=self.url)


@dataclass(slots=True)
class HistoryTurn:
    """An earlier message in the same conversation, for context in prompts."""

    sender: str
    text: str
    reply: str | None = None


@dataclass(slots=True)
class TurnContext:
    """Built once per message (or per merged burst) and handed down the middleware chain."""

    message: Message
    message_id: int
    config: Config
    group: GroupSettings
    question: str
    merged_message_ids: list[int] = field(default_factory=list)
    language: str = "en"
    history: list[HistoryTurn] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    answer: str | None = None
    references: list[Reference] = field(default_factory=list)
    decision: str | None = None
    trace: list[TraceStep] = field(default_factory=list)
    _open_steps: list[TraceStep] = field(default_factory=list)

    @property
    def step(self) -> TraceStep:
        """The trace step of the middleware that is running now."""
        if not self._open_steps:
            raise RuntimeError("no middleware is running")
        return self._open_steps[-1]

    def record(
        self, *, score: float | None = None, threshold: float | None = None, **detail: Any
    ) -> None:
        """Note a score, threshold or detail on the running middleware's trace step."""
        step = self.step
        if score is not None:
            step.score = float(score)
        if threshold is not None:
            step.threshold = float(threshold)
        step.detail.update(detail)

    def ignore(
        self,
        reason: str,
        *,
        score: float | None = None,
        threshold: float | None = None,
        **detail: Any,
    ) -> Reply | None:
        """Stop here and stay silent: ``return ctx.ignore("chitchat")`` from a middleware (the
        silence it returns is the middleware's answer)."""
        self.record(score=score, threshold=threshold, **detail)
        self.decision = f"ignored: {reason}"
        self.step.verdict = self.decision
        return None

    def trace_dicts(self) -> list[dict[str, Any]]:
        return [step.to_dict() for step in self.trace]
