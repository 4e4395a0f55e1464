"""Narrow repository functions. Each takes a session first so `Database.run` can call it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.message import Message, Reply, ReplyKind, utcnow
from bot.storage.models import (
    UNFINISHED_STATUSES,
    Conversation,
    MessageRecord,
    MessageStatus,
    ReplyRecord,
    ReplyStatus,
)


@dataclass(frozen=True, slots=True)
class Stored:
    """The inbox's answer: the message's database id, whether it was already there, and its
    status (a redelivered message still ``received`` may never have been queued)."""

    id: int
    duplicate: bool
    status: str = MessageStatus.RECEIVED


def _conversation(session: Session, message: Message) -> Conversation:
    found = session.scalar(
        select(Conversation).where(
            Conversation.platform == message.platform,
            Conversation.platform_conversation_id == message.conversation_id,
        )
    )
    if found is not None:
        return found
    try:
        with session.begin_nested():
            conversation = Conversation(
                platform=message.platform,
                platform_conversation_id=message.conversation_id,
                conversation_type=message.conversation_type,
            )
            session.add(conversation)
        return conversation
    except IntegrityError:  # created by another worker in the meantime
        return session.scalars(
            select(Conversation).where(
                Conversation.platform == message.platform,
                Conversation.platform_conversation_id == message.conversation_id,
            )
        ).one()


def _existing(session: Session, message: Message) -> Stored | None:
    found = session.execute(
        select(MessageRecord.id, MessageRecord.status).where(
            MessageRecord.platform == message.platform,
            MessageRecord.platform_message_id == message.platform_message_id,
        )
    ).first()
    return None if found is None else Stored(found.id, duplicate=True, status=found.status)


def insert_message(
    session: Session, message: Message, received_at: datetime | None = None
) -> Stored:
    """Persist a received message, or report the copy already stored (redelivery, restart)."""
    existing = _existing(session, message)
    if existing is not None:
        return existing
    conversation = _conversation(session, message)
    record = MessageRecord(
        platform=message.platform,
        platform_message_id=message.platform_message_id,
        conversation_id=conversation.id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        text=message.text,
        mentioned_bot=message.mentioned_bot,
        reply_to=message.reply_to,
        thread_root=message.thread_root,
        sent_at=message.sent_at,
        raw=message.raw,
        status=MessageStatus.RECEIVED,
        received_at=received_at or utcnow(),
    )
    try:
        # The unique constraint is the real guard: two workers may race past the select above.
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        existing = _existing(session, message)
        if existing is None:
            raise
        return existing
    return Stored(record.id, duplicate=False)


def to_message(record: MessageRecord) -> Message:
    conversation = record.conversation
    return Message(
        platform=record.platform,
        conversation_id=conversation.platform_conversation_id,
        sender_id=record.sender_id,
        sender_name=record.sender_name,
        text=record.text,
        platform_message_id=record.platform_message_id,
        mentioned_bot=record.mentioned_bot,
        conversation_type="p2p" if conversation.conversation_type == "p2p" else "group",
        sent_at=record.sent_at,
        reply_to=record.reply_to,
        thread_root=record.thread_root,
        raw=dict(record.raw or {}),
    )


def load_message(session: Session, message_id: int) -> Message:
    return to_message(session.get_one(MessageRecord, message_id))


def set_status(
    session: Session,
    message_ids: list[int],
    status: MessageStatus,
    *,
    decision: str | None = None,
    trace: list[dict[str, Any]] | None = None,
    merged_into_id: int | None = None,
) -> None:
    now = utcnow()
    for record in session.scalars(select(MessageRecord).where(MessageRecord.id.in_(message_ids))):
        record.status = status
        record.updated_at = now
        if decision is not None:
            record.decision = decision
        if trace is not None:
            record.trace = trace
        if merged_into_id is not None and record.id != merged_into_id:
            record.merged_into_id = merged_into_id


def claim(session: Session, message_ids: list[int], resumed: Collection[int] = ()) -> list[int]:
    """Mark the messages ``processing`` and return those that were still waiting for an
    answer: ``received``, or ``processing`` when picked up again after a restart or a sweep
    (``resumed``). One conditional UPDATE, so a message queued twice (a redelivery, another
    worker) is never answered twice."""
    waiting = or_(
        MessageRecord.status == MessageStatus.RECEIVED,
        and_(MessageRecord.status == MessageStatus.PROCESSING, MessageRecord.id.in_(resumed)),
    )
    claimed = set(
        session.scalars(
            update(MessageRecord)
            .where(MessageRecord.id.in_(message_ids), waiting)
            .values(status=MessageStatus.PROCESSING, updated_at=utcnow())
            .returning(MessageRecord.id)
        )
    )
    return [i for i in message_ids if i in claimed]


def add_reply(
    session: Session,
    message_id: int,
    reply: Reply,
    *,
    kind: ReplyKind = ReplyKind.ANSWER,
    question: str = "",
    not_before: datetime | None = None,
) -> int:
    """Store a reply to send now, or held until ``not_before``."""
    data = reply.to_dict()
    record = ReplyRecord(
        message_id=message_id,
        kind=kind,
        question=question,
        text=data["text"],
        references=data["references"],
        mentions=data["mentions"],
        not_before=not_before,
        status=ReplyStatus.PENDING if not_before is None else ReplyStatus.HELD,
    )
    session.add(record)
    session.flush()
    return record.id


def mark_reply(
    session: Session,
    reply_id: int,
    *,
    status: ReplyStatus,
    attempts: int,
    error: str | None = None,
    platform_reply_id: str | None = None,
    sent_at: datetime | None = None,
) -> None:
    record = session.get_one(ReplyRecord, reply_id)
    record.status = status
    record.attempts = attempts
    record.error = error
    if platform_reply_id is not None:
        record.platform_reply_id = platform_reply_id
    if status == ReplyStatus.SENT:
        record.sent_at = sent_at or utcnow()


def store_reply(
    session: Session,
    message_id: int,
    reply: Reply,
    decision: str,
    trace: list[dict[str, Any]],
    *,
    kind: ReplyKind = ReplyKind.ANSWER,
    question: str = "",
    not_before: datetime | None = None,
) -> int:
    """Persist the reply and mark its message as being replied to, in one transaction."""
    reply_id = add_reply(
        session, message_id, reply, kind=kind, question=question, not_before=not_before
    )
    set_status(session, [message_id], MessageStatus.REPLYING, decision=decision, trace=trace)
    return reply_id


@dataclass(frozen=True, slots=True)
class Unfinished:
    id: int
    platform: str
    status: str
    received_at: datetime
    updated_at: datetime
    conversation_key: str
    sender_id: str
    # The latest stored reply, if any: its id, status and error, and until when it is held
    # (a reply held for a human to answer first).
    reply_id: int | None
    reply_status: str | None
    reply_error: str | None
    held_until: datetime | None = None


def unfinished_messages(session: Session, platforms: list[str] | None = None) -> list[Unfinished]:
    """Messages a crash, a stop or a failed write left half-done, oldest first (of
    ``platforms`` only, when given)."""
    query = select(MessageRecord).where(MessageRecord.status.in_(UNFINISHED_STATUSES))
    if platforms is not None:
        query = query.where(MessageRecord.platform.in_(platforms))
    result = []
    for record in session.scalars(query.order_by(MessageRecord.id)).all():
        reply = max(record.replies, key=lambda r: r.id, default=None)
        result.append(
            Unfinished(
                id=record.id,
                platform=record.platform,
                status=record.status,
                received_at=record.received_at,
                updated_at=record.updated_at,
                conversation_key=f"{record.platform}:{record.conversation.platform_conversation_id}",
                sender_id=record.sender_id,
                reply_id=reply.id if reply else None,
                reply_status=reply.status if reply else None,
                reply_error=reply.error if reply else None,
                held_until=reply.not_before if reply else None,
            )
        )
    return result


def load_reply(session: Session, reply_id: int) -> Reply:
    record = session.get_one(ReplyRecord, reply_id)
    return Reply.from_dict(
        {"text": record.text, "references": record.references, "mentions": record.mentions}
    )


def recent_history(
    session: Session, message_id: int, limit: int
) -> list[tuple[str, str, str | None]]:
    """The ``limit`` messages before this one in its conversation: (sender, text, reply)."""
    record = session.get_one(MessageRecord, message_id)
    earlier = session.scalars(
        select(MessageRecord)
        .where(
            MessageRecord.conversation_id == record.conversation_id,
            MessageRecord.id < message_id,
            MessageRecord.merged_into_id.is_(None),
        )
        .order_by(MessageRecord.id.desc())
        .limit(limit)
    ).all()
    turns = []
    for item in reversed(earlier):
        sent = next((r.text for r in item.replies if r.status == ReplyStatus.SENT), None)
        turns.append((item.sender_name or item.sender_id, item.text, sent))
    return turns


def message_view(session: Session, message_id: int) -> dict[str, Any] | None:
    """Everything an admin wants to know about one message, as plain data."""
    record = session.get(MessageRecord, message_id)
    return None if record is None else record_view(record)


def record_view(record: MessageRecord) -> dict[str, Any]:
    """``message_view`` of a loaded record (the console loads a page of them at once)."""
    reply = next((r for r in record.replies), None)
    return {
        "id": record.id,
        "platform": record.platform,
        "platform_message_id": record.platform_message_id,
        "conversation_id": record.conversation.platform_conversation_id,
        "sender_id": record.sender_id,
        "sender_name": record.sender_name,
        "text": record.text,
        "mentioned_bot": record.mentioned_bot,
        "received_at": record.received_at.isoformat(),
        "status": record.status,
        "decision": record.decision,
        "merged_into_id": record.merged_into_id,
        "reply_to": record.reply_to,
        "thread_root": record.thread_root,
        "trace": record.trace or [],
        "reply": None
        if reply is None
        else {
            "id": reply.id,
            "kind": reply.kind,
            "text": reply.text,
            "references": reply.references,
            "mentions": reply.mentions,
            "status": reply.status,
            "attempts": reply.attempts,
            "error": reply.error,
            "platform_reply_id": reply.platform_reply_id,
            "not_before": reply.not_before.isoformat() if reply.not_before else None,
            "deleted": reply.deleted_at is not None,
        },
    }
