"""What the console reads from the database: narrow repository functions, each taking a session
first so ``Database.run`` can call it in a thread.

The message log pages newest first by id (keyset: ``id < before``), never by OFFSET, so a page
deep in 100,000 messages costs what the first one does; each filter has an index that leads with
it and ends with the id (migration 0002).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal_column, or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from bot.storage.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Feedback,
    MessageRecord,
    MessageStatus,
)
from bot.storage.repo import record_view

PAGE_SIZE = 50
# The message log's reason list is drawn from this many recent messages.
RECENT_REASONS = 2000
UNFINISHED = "unfinished"


def reason_of(decision: str | None) -> str:
    """The short reason of a decision: ``ignored: off-topic`` -> ``off-topic``, ``ignored:
    overloaded (100 waiting)`` -> ``overloaded``, ``merged into #12`` -> ``merged``, ``failed:
    ValueError: ...`` -> ``failed``, ``tagged: unsure`` -> ``tagged``, ``command: status`` ->
    ``command``, ``answered: duplicate`` -> ``duplicate``, ``answered`` -> ``answered``; ""
    while undecided."""
    if not decision:
        return ""
    if decision.startswith("merged into"):
        return "merged"
    if decision.startswith("ignored:"):
        return decision.removeprefix("ignored:").strip().split(" (", 1)[0] or "ignored"
    if decision.startswith("answered:"):
        return decision.removeprefix("answered:").strip() or "answered"
    kind = decision.split(":", 1)[0]
    return kind if kind in PREFIXED else decision


# Decisions that are a kind and a detail ("failed: TimeoutError: ...", "tagged: unsure").
PREFIXED = ("failed", "tagged", "command")


def reason_condition(reason: str) -> ColumnElement[bool]:
    """The SQL filter that matches ``reason_of(decision) == reason`` (a prefix match)."""
    decision = MessageRecord.decision
    if reason == "merged":
        return decision.startswith("merged into", autoescape=True)
    if reason in PREFIXED:
        return or_(decision == reason, decision.startswith(f"{reason}:", autoescape=True))
    if reason == "answered":
        return decision == "answered"
    return or_(
        decision == f"ignored: {reason}",
        decision.startswith(f"ignored: {reason} (", autoescape=True),
        decision == f"answered: {reason}",
    )


@dataclass(frozen=True)
class LogFilter:
    """The message log's filters; None or "" means any."""

    platform: str = ""
    group: str = ""  # the platform's conversation id
    status: str = ""  # a MessageStatus value, or "unfinished"
    reason: str = ""  # as reason_of gives it
    since: date | None = None  # received on or after this day (UTC)
    until: date | None = None  # received on or before this day (UTC)

    def conditions(self, session: Session) -> list[ColumnElement[bool]] | None:
        """The SQL conditions, or None when nothing can match. A group is looked up first and
        a time range is turned into the range of ids received in it, so every filter keeps
        the page in id order on an index (no sort of all the matches)."""
        found: list[ColumnElement[bool]] = []
        if self.platform:
            found.append(MessageRecord.platform == self.platform)
        if self.group:
            ids = session.scalars(
                select(Conversation.id).where(Conversation.platform_conversation_id == self.group)
            ).all()
            if not ids:
                return None
            found.append(
                MessageRecord.conversation_id == ids[0]
                if len(ids) == 1
                else MessageRecord.conversation_id.in_(ids)
            )
        if self.status == UNFINISHED:
            found.append(MessageRecord.status.in_(UNFINISHED_STATUSES))
        elif self.status:
            found.append(MessageRecord.status == self.status)
        if self.reason:
            found.append(reason_condition(self.reason))
        if self.since is not None or self.until is not None:
            period: list[ColumnElement[bool]] = []
            if self.since is not None:
                period.append(MessageRecord.received_at >= _midnight(self.since))
            if self.until is not None:
                period.append(
                    MessageRecord.received_at < _midnight(self.until + timedelta(days=1))
                )
            first, last = session.execute(
                select(func.min(MessageRecord.id), func.max(MessageRecord.id)).where(*period)
            ).one()
            if first is None:
                return None
            found.extend([*period, MessageRecord.id >= first, MessageRecord.id <= last])
        return found


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class LogRow:
    id: int
    platform: str
    group: str
    conversation_id: int
    sender: str
    text: str
    received_at: datetime
    status: str
    decision: str | None
    reason: str


@dataclass(frozen=True)
class LogPage:
    rows: list[LogRow]
    # Cursors: ``before`` for the next, older page; ``after`` for the previous, newer one.
    older: int | None
    newer: int | None


def _log_select(where: list[ColumnElement[bool]]) -> Select[*tuple[Any, ...]]:
    return (
        select(
            MessageRecord.id,
            MessageRecord.platform,
            Conversation.platform_conversation_id,
            MessageRecord.conversation_id,
            MessageRecord.sender_name,
            MessageRecord.sender_id,
            MessageRecord.text,
            MessageRecord.received_at,
            MessageRecord.status,
            MessageRecord.decision,
        )
        .join(Conversation, Conversation.id == MessageRecord.conversation_id)
        .where(and_(True, *where))
    )


def log_page(
    session: Session,
    flt: LogFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> LogPage:
    """One page of the message log, newest first: the ``limit`` messages just older than
    ``before`` (or the newest), or just newer than ``after``."""
    where = flt.conditions(session)
    if where is None:
        return LogPage([], None, None)
    if after is not None:
        query = _log_select([*where, MessageRecord.id > after]).order_by(MessageRecord.id.asc())
        found = list(reversed(session.execute(query.limit(limit)).all()))
    else:
        page = [*where, MessageRecord.id < before] if before is not None else where
        query = _log_select(page).order_by(MessageRecord.id.desc())
        found = list(session.execute(query.limit(limit)).all())
    rows = [
        LogRow(
            id=r.id,
            platform=r.platform,
            group=r.platform_conversation_id,
            conversation_id=r.conversation_id,
            sender=r.sender_name or r.sender_id,
            text=r.text,
            received_at=r.received_at,
            status=r.status,
            decision=r.decision,
            reason=reason_of(r.decision),
        )
        for r in found
    ]
    if not rows:
        return LogPage(rows, None, None)

    def any_beyond(condition: ColumnElement[bool]) -> bool:
        return bool(session.scalar(select(exists().where(and_(condition, *where)))))

    older = rows[-1].id if any_beyond(MessageRecord.id < rows[-1].id) else None
    newer = rows[0].id if any_beyond(MessageRecord.id > rows[0].id) else None
    return LogPage(rows, older, newer)


@dataclass(frozen=True)
class LogChoices:
    """What the log's filter fields offer."""

    platforms: list[str]
    groups: list[str]
    reasons: list[str]


def log_choices(session: Session) -> LogChoices:
    platforms = session.scalars(
        select(Conversation.platform).distinct().order_by(Conversation.platform)
    ).all()
    groups = session.scalars(
        select(Conversation.platform_conversation_id)
        .distinct()
        .order_by(Conversation.platform_conversation_id)
        .limit(500)
    ).all()
    recent = (
        select(MessageRecord.decision)
        .where(MessageRecord.decision.is_not(None))
        .order_by(MessageRecord.id.desc())
        .limit(RECENT_REASONS)
        .subquery()
    )
    decisions = session.scalars(select(recent.c.decision).distinct()).all()
    reasons = sorted({reason_of(d) for d in decisions} | {"off-topic", "answered"})
    return LogChoices(list(platforms), list(groups), reasons)


# -- conversations --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationInfo:
    id: int
    platform: str
    group: str  # the platform's conversation id
    conversation_type: str


def _info(conversation: Conversation) -> ConversationInfo:
    return ConversationInfo(
        conversation.id,
        conversation.platform,
        conversation.platform_conversation_id,
        conversation.conversation_type,
    )


def conversation_info(session: Session, conversation_id: int) -> ConversationInfo | None:
    found = session.get(Conversation, conversation_id)
    return None if found is None else _info(found)


def find_conversation(session: Session, platform: str, group: str) -> ConversationInfo | None:
    found = session.scalar(
        select(Conversation).where(
            Conversation.platform == platform, Conversation.platform_conversation_id == group
        )
    )
    return None if found is None else _info(found)


def message_conversation(session: Session, message_id: int) -> int | None:
    return session.scalar(
        select(MessageRecord.conversation_id).where(MessageRecord.id == message_id)
    )


@dataclass(frozen=True)
class ChatWindow:
    """A stretch of one conversation, oldest first, as ``repo.message_view`` dicts."""

    messages: list[dict[str, Any]]
    older: int | None  # ``before`` cursor for the earlier stretch
    newer: int | None  # ``after`` cursor for the later stretch


def chat_window(
    session: Session,
    conversation_id: int,
    *,
    before: int | None = None,
    after: int | None = None,
    around: int | None = None,
    limit: int = PAGE_SIZE,
) -> ChatWindow:
    """The latest ``limit`` messages, or those just before ``before``, just after ``after``,
    or around one message."""
    base = (
        select(MessageRecord)
        .where(MessageRecord.conversation_id == conversation_id)
        .options(selectinload(MessageRecord.replies), joinedload(MessageRecord.conversation))
    )
    records: list[MessageRecord]
    if around is not None:
        earlier = session.scalars(
            base.where(MessageRecord.id <= around)
            .order_by(MessageRecord.id.desc())
            .limit(limit // 2 + 1)
        ).all()
        later = session.scalars(
            base.where(MessageRecord.id > around).order_by(MessageRecord.id).limit(limit // 2)
        ).all()
        records = [*reversed(earlier), *later]
    elif after is not None:
        records = list(
            session.scalars(
                base.where(MessageRecord.id > after).order_by(MessageRecord.id).limit(limit)
            ).all()
        )
    else:
        query = base.order_by(MessageRecord.id.desc()).limit(limit)
        if before is not None:
            query = query.where(MessageRecord.id < before)
        records = list(reversed(session.scalars(query).all()))
    if not records:
        return ChatWindow([], None, None)

    def any_beyond(condition: ColumnElement[bool]) -> bool:
        return bool(
            session.scalar(
                select(exists().where(MessageRecord.conversation_id == conversation_id, condition))
            )
        )

    first, last = records[0].id, records[-1].id
    return ChatWindow(
        [record_view(r) for r in records],
        first if any_beyond(MessageRecord.id < first) else None,
        last if any_beyond(MessageRecord.id > last) else None,
    )


# -- groups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSummary:
    info: ConversationInfo
    messages: int
    answered: int
    ignored: int
    last_message: datetime | None


def group_summaries(session: Session, since: datetime) -> list[GroupSummary]:
    """Every conversation with its messages since ``since``: how many, answered, ignored."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    last: dict[int, datetime] = {}
    # Grouped by an expression, so SQLite's planner (which has no statistics) counts from the
    # covering time index rather than walking another index in group order and reading rows.
    group = MessageRecord.conversation_id + literal_column("0")
    rows = session.execute(
        select(group, MessageRecord.status, func.count(), func.max(MessageRecord.received_at))
        .where(MessageRecord.received_at >= since)
        .group_by(group, MessageRecord.status)
    ).all()
    for conversation_id, status, count, latest in rows:
        counts[conversation_id][status] += count
        if latest is not None:
            latest = _aware(latest)
            last[conversation_id] = max(last.get(conversation_id, latest), latest)
    conversations = session.scalars(
        select(Conversation).order_by(Conversation.platform, Conversation.platform_conversation_id)
    ).all()
    summaries = [
        GroupSummary(
            _info(c),
            sum(counts[c.id].values()),
            counts[c.id][MessageStatus.ANSWERED],
            counts[c.id][MessageStatus.IGNORED],
            last.get(c.id),
        )
        for c in conversations
    ]
    return sorted(summaries, key=lambda s: (-s.messages, s.info.platform, s.info.group))


@dataclass
class DailyOutcomes:
    """Per day (UTC): answered, and ignored by reason."""

    days: list[date]
    series: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(sum(values) for values in self.series.values())

    @property
    def busy(self) -> list[tuple[int, date]]:
        """The days with any message, by position: the chart's table leaves out the rest."""
        return [
            (i, day)
            for i, day in enumerate(self.days)
            if any(values[i] for values in self.series.values())
        ]


def daily_outcomes(
    session: Session, conversation_id: int, days: int, today: date
) -> DailyOutcomes:
    """The group's last ``days`` days, answered and ignored (by reason) per day."""
    first = today - timedelta(days=days - 1)
    day = func.date(MessageRecord.received_at)
    rows = session.execute(
        select(day, MessageRecord.decision, func.count())
        .where(
            MessageRecord.conversation_id == conversation_id,
            MessageRecord.received_at >= _midnight(first),
            MessageRecord.status.in_([MessageStatus.ANSWERED, MessageStatus.IGNORED]),
        )
        .group_by(day, MessageRecord.decision)
    ).all()
    all_days = [first + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(all_days)}
    outcome = DailyOutcomes(all_days)
    for when, decision, count in rows:
        position = index.get(date.fromisoformat(str(when)[:10]))
        if position is None:
            continue
        series = outcome.series.setdefault(reason_of(decision), [0] * days)
        series[position] += count
    return outcome


@dataclass(frozen=True)
class FeedbackItem:
    message_id: int
    user_id: str
    rating: int
    source: str
    example: str
    created_at: datetime


@dataclass(frozen=True)
class FeedbackSummary:
    # (source, +1 or -1) -> how many: reactions, replies ("thanks"/"wrong"), admins.
    counts: dict[tuple[str, int], int]
    latest: list[FeedbackItem]

    def total(self, rating: int) -> int:
        return sum(n for (_, sign), n in self.counts.items() if sign == rating)


def group_feedback(session: Session, conversation_id: int, latest: int = 10) -> FeedbackSummary:
    """The feedback given in one group (reactions, replies, admins' words): counts by source
    and direction, and the latest few."""
    in_group = Feedback.message_id.in_(
        select(MessageRecord.id).where(MessageRecord.conversation_id == conversation_id)
    )
    sign = case((Feedback.rating > 0, 1), (Feedback.rating < 0, -1), else_=0)
    rows = session.execute(
        select(Feedback.source, sign, func.count()).where(in_group).group_by(Feedback.source, sign)
    ).all()
    items = session.scalars(
        select(Feedback).where(in_group).order_by(Feedback.id.desc()).limit(latest)
    ).all()
    return FeedbackSummary(
        counts={(str(source), int(value)): int(count) for source, value, count in rows},
        latest=[
            FeedbackItem(f.message_id, f.user_id, f.rating, f.source, f.example, f.created_at)
            for f in items
        ],
    )


def message_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(MessageRecord)) or 0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
