"""What one turn of the pipeline knows, and the trace that explains its decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bot.config import Config, GroupSettings
from bot.message import Message, Reference, Reply, ReplyKind


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
    # Its id in the knowledge base ("" for a web result): what to read on from.
    chunk_id: str = ""
    # Ids of its document's next-best chunks: a quote may find the answer there.
    alternatives: list[str] = field(default_factory=list)

    def reference(self) -> Reference:
        return Reference(source=self.source, title=self.title, url=self.url)


@dataclass(slots=True)
class HistoryTurn:
    """An earlier message in the same conversation, for context in prompts."""

    sender: str
    text: str
    reply: str | None = None


@dataclass(slots=True)
class Exchange:
    """A question the bot answered and its answer: the context of a follow-up to it."""

    message_id: int
    question: str
    answer: str


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
    # Set by the gate middleware (group manners):
    # a reply to, quote of, or message in the thread of an answer of the bot's;
    follow_up: Exchange | None = None
    # how far the answering threshold is raised from the calibrated one toward certainty
    # (0: not at all, 1: all the way), as the group's reply budget drains;
    strictness: float = 0.0
    # until when the reply waits, so a human can answer first (None: post at once);
    hold_until: datetime | None = None
    # and what the reply is.
    reply_kind: ReplyKind = ReplyKind.ANSWER
    # The deciding middleware's confidence that the message deserves an answer, and the
    # threshold it had to reach (reject.embedding sets them), for the gate's low-confidence tag.
    confidence: float | None = None
    threshold: float | None = None
    _open_steps: list[TraceStep] = field(default_factory=list)

    @property
    def addressed(self) -> bool:
        """Whether the message is meant for the bot: an @-mention, a follow-up to its answer,
        or a private chat."""
        message = self.message
        return (
            message.mentioned_bot
            or self.follow_up is not None
            or message.conversation_type == "p2p"
        )

    def raised(self, threshold: float, top: float = 1.0) -> float:
        """``threshold`` raised toward ``top`` (the scale's certainty) by ``strictness``."""
        return threshold + (top - threshold) * self.strictness

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
