"""What every adapter offers the core, and what the core offers every adapter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from starlette.routing import BaseRoute

from bot.message import Message, Reply

if TYPE_CHECKING:
    from bot.storage.repo import Stored


class SendError(Exception):
    """Sending failed. ``retryable`` says whether the outbox should try again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a reply goes: the conversation and the message it answers."""

    conversation_id: str
    conversation_type: str
    in_reply_to: str
    message_id: int
    raw: dict[str, Any]

    @classmethod
    def for_message(cls, message: Message, message_id: int) -> Delivery:
        return cls(
            conversation_id=message.conversation_id,
            conversation_type=message.conversation_type,
            in_reply_to=message.platform_message_id,
            message_id=message_id,
            raw=message.raw,
        )


class Inbox(Protocol):
    """The core as an adapter sees it."""

    async def receive(self, message: Message) -> Stored: ...

    async def message_view(self, message_id: int) -> dict[str, Any] | None: ...

    async def wait_done(self, message_id: int, wait_seconds: float) -> dict[str, Any] | None: ...


class Adapter(ABC):
    """One IM platform. Receives through the platform SDK, hands Messages to the inbox, acks
    the platform at once, and sends replies back."""

    name: ClassVar[str]

    @property
    def routes(self) -> list[BaseRoute]:
        """HTTP routes this adapter serves on the bot's ASGI app (webhooks, pages)."""
        return []

    @abstractmethod
    async def start(self, inbox: Inbox) -> None:
        """Start receiving (connect websockets, etc.). Must return quickly."""

    async def stop(self) -> None:  # noqa: B027 - most adapters hold nothing to release
        """Stop receiving and release connections."""

    @abstractmethod
    async def send(self, delivery: Delivery, reply: Reply) -> str | None:
        """Post the reply; return the platform's id for it if there is one. Raise SendError."""
