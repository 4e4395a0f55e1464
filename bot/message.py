"""The platform-neutral event and reply: the only shapes the core reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

ConversationType = Literal["group", "p2p"]

# The longest id the store keeps (String(255) columns): longer is not a platform's id.
MAX_ID_CHARS = 255


class InvalidMessage(ValueError):
    """A Message with fields the core cannot store (an adapter read garbage): the adapter
    refuses the event instead of failing to store it on every redelivery."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as an adapter hands it to the core.

    ``platform_message_id`` is the platform's own id; the inbox dedupes on it, so an adapter must
    pass the same id when the platform redelivers an event. ``reply_to`` is the platform id of
    the message this one replies to or quotes, ``thread_root`` that of the first message of the
    thread it was posted in ("" for neither): follow-ups and human answers are found by them.
    """

    platform: str
    conversation_id: str
    sender_id: str
    text: str
    platform_message_id: str
    sender_name: str = ""
    mentioned_bot: bool = False
    conversation_type: ConversationType = "group"
    sent_at: datetime = field(default_factory=utcnow)
    reply_to: str = ""
    thread_root: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        ids = ("platform", "conversation_id", "platform_message_id", "sender_id")
        _check_ids(self, *ids, "reply_to", "thread_root")
        for name in ("platform", "conversation_id", "platform_message_id"):
            if not getattr(self, name):
                raise InvalidMessage(f"{name} is empty")
        if not isinstance(self.text, str) or not isinstance(self.sender_name, str):
            raise InvalidMessage("text and sender_name must be strings")
        if len(self.sender_name) > MAX_ID_CHARS:  # a display name: cut, not refused
            object.__setattr__(self, "sender_name", self.sender_name[:MAX_ID_CHARS])


@dataclass(frozen=True, slots=True)
class Reaction:
    """A group member's reaction to a message the bot posted: +1 (a thumbs up, "thanks") or
    -1 (a thumbs down, "wrong"). Stored as feedback; confirmed feedback teaches the gate."""

    platform: str
    # The platform's id of the bot's message that was reacted to.
    message_id: str
    user_id: str
    rating: int
    emoji: str = ""

    def __post_init__(self) -> None:
        _check_ids(self, "platform", "message_id", "user_id", "emoji")


def _check_ids(item: object, *names: str) -> None:
    """Ids are strings the store can keep (String(255) columns): garbage an adapter read from
    a platform's event is refused, instead of failing the insert on every redelivery."""
    for name in names:
        value = getattr(item, name)
        if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
            raise InvalidMessage(
                f"{name} must be a string of at most {MAX_ID_CHARS} characters, "
                f"got {type(value).__name__}"
                + (f" of {len(value)}" if isinstance(value, str) else "")
            )


@dataclass(frozen=True, slots=True)
class Reference:
    """Where an answer came from: a file path with heading, or a web page."""

    source: str
    title: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "title": self.title, "url": self.url}

    def label(self) -> str:
        """How it reads as text: a web page by its title (or URL), a file as 'path § heading'."""
        if self.url:
            return self.title or self.url
        return f"{self.source} § {self.title}" if self.title else self.source

    def plain(self) -> str:
        """The label where links cannot be clicked: a web page's URL itself."""
        return self.url or self.label()


class ReplyKind(StrEnum):
    """What a reply is. Reply budgets count every kind but the answers to admin commands."""

    ANSWER = "answer"
    # A short pointer to an earlier answer to the same question.
    POINTER = "pointer"
    # The question handed to the on-call people instead of an unsure answer.
    TAG = "tag"
    COMMAND = "command"


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says back; each adapter renders it in its platform's format."""

    text: str
    references: tuple[Reference, ...] = ()
    mentions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "references": [r.to_dict() for r in self.references],
            "mentions": list(self.mentions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=data["text"],
            references=tuple(Reference(**r) for r in data.get("references", [])),
            mentions=tuple(data.get("mentions", [])),
        )

    def render_plain(self) -> str:
        """Text with references as a numbered list: the fallback rendering for any platform."""
        if not self.references:
            return self.text
        lines = [self.text, "", "References:"]
        lines += [f"[{i}] {ref.plain()}" for i, ref in enumerate(self.references, 1)]
        return "\n".join(lines)
