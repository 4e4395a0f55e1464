"""What the group manners read and write: reply budgets, held replies, answered questions and
follow-ups, paused groups and feedback. Narrow functions, each taking a session first so
``Database.run`` can call them; counted from the database, so they hold across restarts and
across several workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.message import Message, Reaction, ReplyKind
from bot.storage.models import (
    FINAL_STATUSES,
    Conversation,
    Feedback,
    FeedbackSource,
    MessageRecord,
    ReplyRecord,
    ReplyStatus,
)
from bot.storage.repo import to_message

# Replies that are the bot speaking up in a group (what a reply budget counts).
SPOKEN_KINDS = (ReplyKind.ANSWER, ReplyKind.POINTER, ReplyKind.TAG)
# A reply budget is per hour.
BUDGET_WINDOW = timedelta(hours=1)


def _conversation(session: Session, platform: str, conversation_id: str) -> Conversation | None:
    return session.scalar(
        select(Conversation).where(
            Conversation.platform == platform,
            Conversation.platform_conversation_id == conversation_id,
        )
    )


# -- the reply budget ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """The bot's messages in one group in the last window: posted, or held to be posted."""

    used: int
    # When the bot last posted here, or will post a held reply (None: not in the window).
    last_post: datetime | None


def reply_budget(
    session: Session,
    platform: str,
    conversation_id: str,
    now: datetime,
    window: timedelta = BUDGET_WINDOW,
) -> Budget:
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None:
        return Budget(0, None)
    rows = session.execute(
        select(ReplyRecord.status, ReplyRecord.sent_at, ReplyRecord.not_before)
        .join(MessageRecord, ReplyRecord.message_id == MessageRecord.id)
        .where(
            MessageRecord.conversation_id == conversation.id,
            ReplyRecord.kind.in_(SPOKEN_KINDS),
            or_(
                (ReplyRecord.status == ReplyStatus.SENT) & (ReplyRecord.sent_at >= now - window),
                (ReplyRecord.status == ReplyStatus.HELD)
                & (ReplyRecord.not_before >= now - window),
            ),
        )
    ).all()
    times: list[datetime] = [moment for _, sent, held in rows if (moment := sent or held)]
    return Budget(len(rows), max(times, default=None))


# -- held replies -------------------------------------------------------------------------------


def claim_held(session: Session, reply_id: int) -> bool:
    """Take a held reply to post it; False when another worker (or a restart) took it."""
    result = session.execute(
        update(ReplyRecord)
        .where(ReplyRecord.id == reply_id, ReplyRecord.status == ReplyStatus.HELD)
        .values(status=ReplyStatus.PENDING)
    )
    return bool(getattr(result, "rowcount", 0))


def withdraw(session: Session, reply_id: int) -> bool:
    """Drop a held reply (a human answered first); False when it is no longer held."""
    result = session.execute(
        update(ReplyRecord)
        .where(ReplyRecord.id == reply_id, ReplyRecord.status == ReplyStatus.HELD)
        .values(status=ReplyStatus.WITHDRAWN)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Held:
    message_id: int
    reply_id: int
    platform: str
    not_before: datetime


def due_held(session: Session, now: datetime) -> list[Held]:
    """Held replies whose time has come, oldest first."""
    rows = session.execute(
        select(
            ReplyRecord.message_id, ReplyRecord.id, MessageRecord.platform, ReplyRecord.not_before
        )
        .join(MessageRecord, ReplyRecord.message_id == MessageRecord.id)
        .where(ReplyRecord.status == ReplyStatus.HELD, ReplyRecord.not_before <= now)
        .order_by(ReplyRecord.not_before)
    ).all()
    return [
        Held(message_id, reply_id, platform, not_before or now)
        for message_id, reply_id, platform, not_before in rows
    ]


@dataclass(frozen=True, slots=True)
class Later:
    """A message that arrived after a question, for the check whether a human answered it."""

    id: int
    message: Message


def messages_after(session: Session, message_id: int, limit: int = 200) -> list[Later]:
    """The messages posted in the question's conversation after it, oldest first."""
    record = session.get_one(MessageRecord, message_id)
    later = session.scalars(
        select(MessageRecord)
        .where(
            MessageRecord.conversation_id == record.conversation_id,
            MessageRecord.id > message_id,
        )
        .order_by(MessageRecord.id)
        .limit(limit)
    ).all()
    return [Later(item.id, to_message(item)) for item in later]


# -- answered questions: duplicates and follow-ups ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """A question the bot answered in a group, and its answer as posted."""

    message_id: int
    reply_id: int
    question: str
    answer: str
    asker_id: str
    asker_name: str
    platform_message_id: str
    platform_reply_id: str
    sent_at: datetime


def _answered(reply: ReplyRecord) -> Answered:
    message = reply.message
    return Answered(
        message_id=message.id,
        reply_id=reply.id,
        question=reply.question or message.text,
        answer=reply.text,
        asker_id=message.sender_id,
        asker_name=message.sender_name or message.sender_id,
        platform_message_id=message.platform_message_id,
        platform_reply_id=reply.platform_reply_id or "",
        sent_at=reply.sent_at or reply.created_at,
    )


def _answers(conversation: Conversation) -> Any:
    return (
        select(ReplyRecord)
        .join(MessageRecord, ReplyRecord.message_id == MessageRecord.id)
        .where(
            MessageRecord.conversation_id == conversation.id,
            ReplyRecord.status == ReplyStatus.SENT,
            ReplyRecord.deleted_at.is_(None),
        )
    )


def recent_answers(
    session: Session, platform: str, conversation_id: str, since: datetime, limit: int = 50
) -> list[Answered]:
    """Full answers (not pointers) posted in the group since ``since``, newest first."""
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None:
        return []
    replies = session.scalars(
        _answers(conversation)
        .where(ReplyRecord.kind == ReplyKind.ANSWER, ReplyRecord.sent_at >= since)
        .order_by(ReplyRecord.id.desc())
        .limit(limit)
    ).all()
    return [_answered(reply) for reply in replies]


def followed_up(session: Session, message: Message) -> Answered | None:
    """The bot's answer this message follows up on: it replies to or quotes the answer, or
    the asker writes in the thread of the question the bot answered. None otherwise."""
    conversation = _conversation(session, message.platform, message.conversation_id)
    if conversation is None or not (message.reply_to or message.thread_root):
        return None
    spoken = _answers(conversation).where(ReplyRecord.kind.in_(SPOKEN_KINDS))
    targets = [t for t in (message.reply_to, message.thread_root) if t]
    reply = session.scalars(
        spoken.where(ReplyRecord.platform_reply_id.in_(targets)).order_by(ReplyRecord.id.desc())
    ).first()
    if reply is not None:
        return _answered(reply)
    if not message.thread_root:
        return None
    reply = session.scalars(
        spoken.where(
            MessageRecord.platform_message_id == message.thread_root,
            MessageRecord.sender_id == message.sender_id,
        ).order_by(ReplyRecord.id.desc())
    ).first()
    return _answered(reply) if reply is not None else None


def last_answer(session: Session, platform: str, conversation_id: str) -> Answered | None:
    """The bot's last message in the group that is still there (for /hxd forget)."""
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None:
        return None
    reply = session.scalars(
        _answers(conversation)
        .where(ReplyRecord.kind.in_(SPOKEN_KINDS))
        .order_by(ReplyRecord.id.desc())
    ).first()
    return _answered(reply) if reply is not None else None


def mark_deleted(session: Session, reply_id: int, at: datetime) -> None:
    session.get_one(ReplyRecord, reply_id).deleted_at = at


def last_decision(
    session: Session, platform: str, conversation_id: str, before_id: int
) -> dict[str, Any] | None:
    """The latest decided message in the group before ``before_id`` that is not a command,
    with its trace (for /hxd why)."""
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None:
        return None
    record = session.scalars(
        select(MessageRecord)
        .where(
            MessageRecord.conversation_id == conversation.id,
            MessageRecord.id < before_id,
            MessageRecord.status.in_(FINAL_STATUSES),
            MessageRecord.merged_into_id.is_(None),
            or_(MessageRecord.decision.is_(None), ~MessageRecord.decision.startswith("command")),
        )
        .order_by(MessageRecord.id.desc())
    ).first()
    if record is None:
        return None
    return {
        "id": record.id,
        "text": record.text,
        "status": record.status,
        "decision": record.decision or "",
        "trace": record.trace or [],
    }


# -- pausing a group --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paused:
    at: datetime
    by: str


def paused(session: Session, platform: str, conversation_id: str) -> Paused | None:
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None or conversation.paused_at is None:
        return None
    return Paused(conversation.paused_at, conversation.paused_by)


def set_paused(
    session: Session, platform: str, conversation_id: str, at: datetime | None, by: str = ""
) -> None:
    """Pause (``at`` is when) or resume (``at`` None) a group the bot has seen."""
    conversation = _conversation(session, platform, conversation_id)
    if conversation is None:
        raise LookupError(f"no conversation {platform}:{conversation_id}")
    conversation.paused_at = at
    conversation.paused_by = by if at is not None else ""


# -- feedback -----------------------------------------------------------------------------------


def add_feedback(
    session: Session,
    *,
    message_id: int,
    user_id: str,
    rating: int,
    source: FeedbackSource,
    example: str,
    comment: str = "",
    reply_id: int | None = None,
    at: datetime | None = None,
) -> int:
    record = Feedback(
        message_id=message_id,
        reply_id=reply_id,
        user_id=user_id,
        rating=rating,
        source=source,
        example=example,
        comment=comment,
    )
    if at is not None:
        record.created_at = at
    session.add(record)
    session.flush()
    return record.id


def add_reaction(session: Session, reaction: Reaction, at: datetime | None = None) -> int | None:
    """Store a reaction to one of the bot's replies as feedback on the question it answered;
    None when the message reacted to is not one of the bot's (or not known here)."""
    reply = session.scalars(
        select(ReplyRecord)
        .join(MessageRecord, ReplyRecord.message_id == MessageRecord.id)
        .where(
            MessageRecord.platform == reaction.platform,
            ReplyRecord.platform_reply_id == reaction.message_id,
        )
        .order_by(ReplyRecord.id.desc())
    ).first()
    if reply is None or reply.kind == ReplyKind.COMMAND:
        return None
    return add_feedback(
        session,
        message_id=reply.message_id,
        reply_id=reply.id,
        user_id=reaction.user_id,
        rating=reaction.rating,
        source=FeedbackSource.REACTION,
        example=reply.question or reply.message.text,
        comment=reaction.emoji,
        at=at,
    )


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    id: int
    conversation_id: str
    example: str
    rating: int
    user_id: str
    source: str
    created_at: datetime


def all_feedback(session: Session) -> list[FeedbackRow]:
    """Every feedback row with the group it came from, oldest first (the learning job)."""
    rows = session.execute(
        select(Feedback, Conversation.platform_conversation_id)
        .join(MessageRecord, Feedback.message_id == MessageRecord.id)
        .join(Conversation, MessageRecord.conversation_id == Conversation.id)
        .order_by(Feedback.id)
    ).all()
    return [
        FeedbackRow(
            id=feedback.id,
            conversation_id=conversation_id,
            example=feedback.example,
            rating=feedback.rating,
            user_id=feedback.user_id,
            source=feedback.source,
            created_at=feedback.created_at,
        )
        for feedback, conversation_id in rows
    ]
