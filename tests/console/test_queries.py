"""The message log pages through every matching message exactly once, newest first, under each
filter, and keeps to an index; the groups' figures add up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from bot.app.console import queries
from bot.app.console.queries import LogFilter, reason_of
from bot.storage.db import Database
from bot.storage.models import Conversation, MessageRecord
from tests.console.seed import seed

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MESSAGES = 3000


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    path: Path = tmp_path_factory.mktemp("log") / "bot.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    seed(database, MESSAGES, groups=40, days=30, now=NOW)
    return database


def everything(database: Database) -> list[dict[str, Any]]:
    def read(session: Any) -> list[dict[str, Any]]:
        rows = session.execute(
            select(
                MessageRecord.id,
                MessageRecord.platform,
                MessageRecord.status,
                MessageRecord.decision,
                MessageRecord.received_at,
                Conversation.platform_conversation_id,
            ).join(Conversation)
        ).all()
        return [row._asdict() for row in rows]

    return database.run_sync(read)


DAY = date(2026, 11, 20)
FILTERS: list[tuple[LogFilter, Callable[[dict[str, Any]], bool]]] = [
    (LogFilter(), lambda r: True),
    (LogFilter(platform="dingtalk"), lambda r: r["platform"] == "dingtalk"),
    (
        LogFilter(group="oc_group_0007"),
        lambda r: r["platform_conversation_id"] == "oc_group_0007",
    ),
    (LogFilter(status="ignored"), lambda r: r["status"] == "ignored"),
    (LogFilter(reason="off-topic"), lambda r: reason_of(r["decision"]) == "off-topic"),
    (LogFilter(reason="merged"), lambda r: reason_of(r["decision"]) == "merged"),
    (LogFilter(reason="overloaded"), lambda r: reason_of(r["decision"]) == "overloaded"),
    (LogFilter(reason="failed"), lambda r: reason_of(r["decision"]) == "failed"),
    (
        LogFilter(since=DAY, until=DAY + timedelta(days=2)),
        lambda r: DAY <= r["received_at"].astimezone(UTC).date() <= DAY + timedelta(days=2),
    ),
    (
        LogFilter(platform="feishu", status="answered", since=DAY),
        lambda r: (
            r["platform"] == "feishu"
            and r["status"] == "answered"
            and r["received_at"].astimezone(UTC).date() >= DAY
        ),
    ),
    (LogFilter(group="no-such-group"), lambda r: False),
    (LogFilter(since=date(2030, 1, 1)), lambda r: False),
]


@pytest.mark.parametrize(("flt", "matches"), FILTERS)
def test_pages_hold_every_match_once_newest_first_both_ways(
    database: Database, flt: LogFilter, matches: Callable[[dict[str, Any]], bool]
) -> None:
    expected = sorted((r["id"] for r in everything(database) if matches(r)), reverse=True)
    older: list[int] = []
    pages: list[list[int]] = []
    page = database.run_sync(queries.log_page, flt, limit=40)
    assert page.newer is None
    while True:
        ids = [row.id for row in page.rows]
        pages.append(ids)
        older.extend(ids)
        if page.older is None:
            break
        page = database.run_sync(queries.log_page, flt, before=page.older, limit=40)
    assert older == expected
    assert all(len(ids) == 40 for ids in pages[:-1])
    # And back again from the oldest page with the "newer" cursors.
    newest_first = list(pages[-1])
    while page.newer is not None:
        page = database.run_sync(queries.log_page, flt, after=page.newer, limit=40)
        newest_first = [row.id for row in page.rows] + newest_first
    assert newest_first == expected


@pytest.mark.parametrize(
    "flt",
    [
        LogFilter(),
        LogFilter(platform="wecom"),
        LogFilter(group="oc_group_0003"),
        LogFilter(status="failed"),
        LogFilter(since=DAY, until=DAY),
    ],
)
def test_a_page_is_read_in_id_order_from_an_index_never_sorted(
    database: Database, flt: LogFilter
) -> None:
    """What keeps a page fast at 100,000 messages (bench/console_log_bench.py): the filter's
    index leads to the newest match and the walk stops after one page."""

    def plan(session: Any) -> list[str]:
        where = flt.conditions(session)
        assert where is not None
        query = (
            queries._log_select([*where, MessageRecord.id < 2000])
            .order_by(MessageRecord.id.desc())
            .limit(50)
        )
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        return [
            row[-1] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        ]

    steps = database.run_sync(plan)
    assert not any("TEMP B-TREE" in step for step in steps), steps
    assert any(step.startswith("SEARCH messages USING") for step in steps), steps


def test_reason_of_reads_every_kind_of_decision() -> None:
    assert reason_of("ignored: off-topic") == "off-topic"
    assert reason_of("ignored: overloaded (100 messages already waiting)") == "overloaded"
    assert reason_of("merged into #12") == "merged"
    assert reason_of("failed: ValueError: no") == "failed"
    assert reason_of("answered") == "answered"
    assert reason_of(None) == ""


def test_chat_window_pages_a_conversation(database: Database) -> None:
    rows = [r for r in everything(database) if r["platform_conversation_id"] == "oc_group_0001"]
    ids = sorted(r["id"] for r in rows)
    conversation = database.run_sync(queries.find_conversation, "feishu", "oc_group_0001")
    assert conversation is not None
    latest = database.run_sync(queries.chat_window, conversation.id, limit=20)
    assert [m["id"] for m in latest.messages] == ids[-20:]
    assert latest.newer is None and latest.older == ids[-20]
    earlier = database.run_sync(
        queries.chat_window, conversation.id, before=latest.older, limit=20
    )
    assert [m["id"] for m in earlier.messages] == ids[-40:-20]
    middle = ids[len(ids) // 2]
    around = database.run_sync(queries.chat_window, conversation.id, around=middle, limit=20)
    got = [m["id"] for m in around.messages]
    assert middle in got and got == sorted(got) and len(got) == 21


def test_groups_and_their_days_add_up(database: Database) -> None:
    rows = everything(database)
    since = NOW - timedelta(days=10)
    summaries = database.run_sync(queries.group_summaries, since)
    recent = [r for r in rows if r["received_at"] >= since]
    assert sum(s.messages for s in summaries) == len(recent)
    assert sum(s.answered for s in summaries) == sum(r["status"] == "answered" for r in recent)
    group = next(s for s in summaries if s.info.group == "oc_group_0002")
    daily = database.run_sync(queries.daily_outcomes, group.info.id, 10, NOW.date())
    assert len(daily.days) == 10 and daily.days[-1] == NOW.date()
    decided = [
        r
        for r in rows
        if r["platform_conversation_id"] == "oc_group_0002"
        and r["status"] in ("answered", "ignored")
        and r["received_at"].astimezone(UTC).date() >= daily.days[0]
    ]
    assert daily.total == len(decided)
    assert sum(daily.series.get("answered", [])) == sum(r["status"] == "answered" for r in decided)
