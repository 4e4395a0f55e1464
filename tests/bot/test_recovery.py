"""No message is left waiting: storing and queueing are one step, a redelivery queues a
message that was stored but never queued, the sweeper (driven here by an injected clock) picks
up what a failed write or a dead task left behind, and nothing in flight is answered twice."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.config import Config
from bot.message import Reply, utcnow
from bot.runtime import Bot
from bot.storage import repo
from bot.storage.models import MessageRecord, ReplyStatus
from tests.conftest import write_lock
from tests.fakes import GatedChatModel, RecordingAdapter, ScriptedChatModel, make_message

pytestmark = pytest.mark.unit

STUCK_AFTER = 120


class Clock:
    """The time the sweeper sees, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class LogSeen(logging.Handler):
    """Sets ``seen`` when a log line containing ``text`` is emitted (on any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def recovered(view: dict[str, Any]) -> list[str]:
    return [step["verdict"] for step in view["trace"] if step["name"] == "recovered"]


@pytest.fixture
def config(config_factory: Callable[..., Config]) -> Config:
    return config_factory({"queue": {"stuck_after_seconds": STUCK_AFTER}})


async def test_receive_finishes_storing_and_queueing_when_the_caller_gives_up(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    """An adapter's ack deadline passes (or its request is cancelled) while the database is
    busy: the message is still stored and queued once the database is free."""
    adapter = RecordingAdapter()
    bot: Bot = await bot_factory(config, [adapter], ScriptedChatModel("an answer"))
    with write_lock(config):
        caller = asyncio.create_task(bot.inbox.receive(make_message(platform_message_id="m-1")))
        await asyncio.sleep(0)  # let it start: the insert now waits for the lock
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    await bot.join()
    [(delivery, _)] = adapter.sent
    view = await bot.inbox.message_view(delivery.message_id)
    assert view["status"] == "answered"


async def test_a_redelivery_queues_a_message_stored_but_never_queued(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = ScriptedChatModel("an answer")
    bot: Bot = await bot_factory(config, [adapter], llm)
    message = make_message(platform_message_id="m-lost")
    # Stored by a worker that stopped before queueing it.
    first = bot.db.run_sync(repo.insert_message, message)

    again = await bot.inbox.receive(message)
    await bot.join()
    assert again.duplicate and again.id == first.id
    view = await bot.inbox.message_view(first.id)
    assert view["status"] == "answered"
    assert len(adapter.sent) == 1 and len(llm.calls) == 1


async def test_nothing_in_flight_is_queued_or_swept_twice(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    model = GatedChatModel("an answer")
    bot: Bot = await bot_factory(config, [adapter], model)
    clock = Clock()
    bot.recovery.clock = clock
    message = make_message(platform_message_id="m-slow")
    stored = await bot.inbox.receive(message)
    await asyncio.wait_for(model.started.wait(), 10)

    for _ in range(3):  # the platform redelivers while the model thinks
        assert (await bot.inbox.receive(message)).duplicate
    clock.advance(10 * STUCK_AFTER)
    assert await bot.recovery.sweep() == 0  # in flight here: not stuck
    model.gate.set()
    await bot.join()

    view = await bot.inbox.message_view(stored.id)
    assert view["status"] == "answered" and recovered(view) == []
    assert len(adapter.sent) == 1 and len(model.calls) == 1


async def test_the_sweeper_picks_up_stuck_messages_without_a_restart(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = ScriptedChatModel("fresh answer")
    bot: Bot = await bot_factory(config, [adapter], llm)
    clock = Clock()
    bot.recovery.clock = clock
    db = bot.db

    # What failed writes and dead tasks leave behind, in each unfinished status:
    received = db.run_sync(repo.insert_message, make_message(text="never queued"))
    processing = db.run_sync(repo.insert_message, make_message(text="status write failed"))
    db.run_sync(repo.set_status, [processing.id], "processing")
    replying = db.run_sync(repo.insert_message, make_message(text="send never finished"))
    db.run_sync(repo.store_reply, replying.id, Reply(text="stored answer"), "answered", [])
    sent = db.run_sync(repo.insert_message, make_message(text="sent, not marked"))
    reply_id = db.run_sync(repo.store_reply, sent.id, Reply(text="sent answer"), "answered", [])
    db.run_sync(repo.mark_reply, reply_id, status=ReplyStatus.SENT, attempts=1)
    old = db.run_sync(repo.insert_message, make_message(text="from this morning"))

    def settle(session: Any) -> None:
        """Every status was last written at the sweeper's "now" (a slow machine takes a while
        to write them), and one message arrived this morning."""
        for stored in (received, processing, replying, sent, old):
            session.get(MessageRecord, stored.id).updated_at = clock.now
        session.get(MessageRecord, old.id).received_at = clock.now - timedelta(hours=5)

    db.run_sync(settle)

    assert await bot.recovery.sweep() == 0  # nothing has been waiting long enough yet
    clock.advance(STUCK_AFTER + 1)
    assert await bot.recovery.sweep() == 5
    await bot.join()
    assert await bot.recovery.sweep() == 0  # all done: nothing left to pick up

    views = {s.id: db.run_sync(repo.message_view, s.id) for s in (received, processing)}
    for view in views.values():
        assert view["status"] == "answered"
        [why] = recovered(view)
        assert why.startswith("resumed after 121s stuck in"), why
    assert recovered(views[received.id]) == ["resumed after 121s stuck in received"]
    assert recovered(views[processing.id]) == ["resumed after 121s stuck in processing"]
    resent = db.run_sync(repo.message_view, replying.id)
    assert resent["status"] == "answered"
    assert recovered(resent) == ["reply resent after 121s stuck in replying"]
    marked = db.run_sync(repo.message_view, sent.id)
    assert marked["status"] == "answered"
    assert recovered(marked) == ["status written after 121s stuck in replying"]
    expired = db.run_sync(repo.message_view, old.id)
    assert expired["status"] == "expired"
    assert "older than 30 min" in expired["decision"]
    # Two fresh answers, the stored one resent as it was, the sent one not sent again.
    texts = sorted(reply.text for _, reply in adapter.sent)
    assert texts == ["fresh answer", "fresh answer", "stored answer"]
    assert len(llm.calls) == 2


async def test_a_restart_says_so_in_the_trace(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    crashed = await bot_factory(config, [RecordingAdapter()], start=False)
    db = crashed.db
    processing = db.run_sync(repo.insert_message, make_message(text="mid pipeline"))
    db.run_sync(repo.set_status, [processing.id], "processing")
    replying = db.run_sync(repo.insert_message, make_message(text="reply stored"))
    db.run_sync(repo.store_reply, replying.id, Reply(text="stored answer"), "answered", [])

    restarted: Bot = await bot_factory(config, [RecordingAdapter()], ScriptedChatModel("new"))
    await restarted.join()
    resumed = db.run_sync(repo.message_view, processing.id)
    assert resumed["status"] == "answered"
    assert recovered(resumed) == ["resumed after a restart (was processing)"]
    resent = db.run_sync(repo.message_view, replying.id)
    assert resent["status"] == "answered"
    assert recovered(resent) == ["reply resent after a restart"]
    assert [step["name"] for step in resent["trace"]] == ["recovered", "send"]


async def test_database_calls_have_threads_of_their_own(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    """asyncio's default pool busy with blocking calls (a slow token endpoint) does not hold
    up storing a message."""
    bot: Bot = await bot_factory(config, [RecordingAdapter()], ScriptedChatModel("an answer"))
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blocked = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    try:
        stored = await asyncio.wait_for(bot.inbox.receive(make_message()), 10)
        assert not stored.duplicate
    finally:
        release.set()
        await asyncio.gather(*blocked)
    await bot.join()


async def test_a_write_that_finds_the_database_locked_is_tried_again(
    config_factory: Callable[..., Config],
    bot_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_factory({"database": {"busy_timeout_seconds": 0.1, "attempts": 50}})
    adapter = RecordingAdapter()
    bot: Bot = await bot_factory(config, [adapter], ScriptedChatModel("an answer"))
    caplog.set_level(logging.WARNING, logger="bot.storage.db")
    retried = LogSeen("database locked")
    logging.getLogger("bot.storage.db").addHandler(retried)
    try:
        with write_lock(config):
            receiving = asyncio.create_task(bot.inbox.receive(make_message()))
            assert await asyncio.to_thread(retried.seen.wait, 20)
            assert not receiving.done()
    finally:
        logging.getLogger("bot.storage.db").removeHandler(retried)
    stored = await asyncio.wait_for(receiving, 10)
    await bot.join()
    view = await bot.inbox.message_view(stored.id)
    assert view["status"] == "answered" and len(adapter.sent) == 1
    [line, *_] = [r for r in caplog.records if "database locked" in r.getMessage()]
    assert "insert_message" in line.getMessage() and line.exc_info is None


async def test_a_reply_held_for_a_human_is_not_swept_while_its_timer_runs(
    config: Config, bot_factory: Callable[..., Any]
) -> None:
    """A hold (humans first) may last longer than the stuck threshold: the sweep leaves a
    held reply on its timer alone, and schedules one whose timer was lost, never posts it."""
    adapter = RecordingAdapter()
    bot: Bot = await bot_factory(config, [adapter], ScriptedChatModel("an answer"))
    clock = Clock()
    bot.recovery.clock = clock
    db = bot.db
    stored = db.run_sync(repo.insert_message, make_message(text="held question"))
    until = utcnow() + timedelta(hours=1)
    reply_id = db.run_sync(
        repo.store_reply, stored.id, Reply(text="held answer"), "answered", [], not_before=until
    )
    bot.holds.schedule(stored.id, reply_id, until)
    clock.advance(10 * STUCK_AFTER)
    assert await bot.recovery.sweep() == 0  # on its timer here

    bot.holds.cancel()  # the timer is lost (its release failed, say)
    assert await bot.recovery.sweep() == 1  # scheduled again for its time
    assert reply_id in bot.holds
    await bot.join()
    assert adapter.sent == []  # still held: not posted before its time
    assert db.run_sync(repo.message_view, stored.id)["status"] == "replying"
