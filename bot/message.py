"""The platform-neutral event and reply: the only shapes the core reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ConversationType = Literal["group", "p2p"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as an adapter hands it to the core.

    ``platform_message_id`` is the platform's own id; the inbox dedupes on it, so an adapter must
    pass the same id when the platform redelivers an event.
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
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


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
