"""The tables. Alembic migrations in migrations/ must match these (a test checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bot.message import ReplyKind, utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class MessageStatus(StrEnum):
    """Where a message is on its way: stored, in the pipeline, its reply being sent, or done."""

    RECEIVED = "received"
    PROCESSING = "processing"
    REPLYING = "replying"
    ANSWERED = "answered"
    IGNORED = "ignored"
    FAILED = "failed"
    EXPIRED = "expired"


UNFINISHED_STATUSES = (MessageStatus.RECEIVED, MessageStatus.PROCESSING, MessageStatus.REPLYING)
FINAL_STATUSES = frozenset(set(MessageStatus) - set(UNFINISHED_STATUSES))


class ReplyStatus(StrEnum):
    PENDING = "pending"
    # Waiting until its not_before time, so a human can answer first (the gate's hold).
    HELD = "held"
    SENT = "sent"
    FAILED = "failed"
    # Held, then not posted: a human answered the question meanwhile.
    WITHDRAWN = "withdrawn"


class FeedbackSource(StrEnum):
    REACTION = "reaction"
    # A reply to the bot's answer: "thanks", "wrong", "谢谢", "不对".
    REPLY = "reply"
    # An admin: /hxd good, /hxd bad, /hxd forget.
    ADMIN = "admin"


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "platform_conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_conversation_id: Mapped[str] = mapped_column(String(255))
    conversation_type: Mapped[str] = mapped_column(String(16), default="group")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set by an admin's /hxd pause: the bot stays silent here until /hxd resume.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    paused_by: Mapped[str] = mapped_column(String(255), default="")

    messages: Mapped[list[MessageRecord]] = relationship(back_populates="conversation")


class MessageRecord(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("platform", "platform_message_id", name="uq_messages_platform_id"),
        Index("ix_messages_conversation_received", "conversation_id", "received_at"),
        # The console's message log pages newest first by id (keyset), filtered by any of these.
        Index("ix_messages_status_id", "status", "id"),
        Index("ix_messages_platform_id", "platform", "id"),
        Index("ix_messages_conversation_id", "conversation_id", "id"),
        # Time ranges, and the groups page's counts per group and status (covering).
        Index("ix_messages_received", "received_at", "conversation_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_message_id: Mapped[str] = mapped_column(String(255))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    sender_id: Mapped[str] = mapped_column(String(255))
    sender_name: Mapped[str] = mapped_column(String(255), default="")
    text: Mapped[str] = mapped_column(Text)
    mentioned_bot: Mapped[bool] = mapped_column(default=False)
    reply_to: Mapped[str] = mapped_column(String(255), default="")
    thread_root: Mapped[str] = mapped_column(String(255), default="")
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.RECEIVED)
    decision: Mapped[str | None] = mapped_column(Text, default=None)
    trace: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), default=None)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    replies: Mapped[list[ReplyRecord]] = relationship(back_populates="message")


class ReplyRecord(Base):
    __tablename__ = "replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=ReplyKind.ANSWER)
    # The question as the pipeline answered it (cleaned, merged): for duplicates, follow-ups
    # and the examples feedback teaches the gate.
    question: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    references: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    mentions: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=ReplyStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    platform_reply_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A held reply is not posted before this time.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Deleted from the group by an admin's /hxd forget.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    message: Mapped[MessageRecord] = relationship(back_populates="replies")


class Feedback(Base):
    """A group member's reaction to a reply (thumbs up/down, "thanks", "wrong") or an admin's
    correction. ``example`` is the question it says the bot should (rating +1) or should not
    (-1) answer; the learning job turns confirmed feedback into gate examples."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The message it is about: the question answered, or the admin's command.
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    reply_id: Mapped[int | None] = mapped_column(ForeignKey("replies.id"), default=None)
    user_id: Mapped[str] = mapped_column(String(255))
    rating: Mapped[int] = mapped_column(default=0)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default=FeedbackSource.REACTION)
    example: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
