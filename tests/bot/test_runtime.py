"""The core end to end in-process: inbox dedupe, per-conversation queues, outbox, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.config import Config
from bot.llm.protocol import ChatMessage, Completion
from bot.message import Reply, utcnow
from bot.storage import repo
from bot.storage.models import MessageRecord
from tests.fakes import RecordingAdapter, ScriptedChatModel, make_message

pytestmark = pytest.mark.unit


class GatedModel(ScriptedChatModel):
    """Answers with the question it was asked, but holds questions containing 'wait' until
    the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(lambda messages: "answer to " + messages[-1]["content"].split(": ")[-1])
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.any_started = asyncio.Event()

    async def complete(self, messages: list[ChatMessage], **kwargs: Any) -> Completion:
        question = messages[-1]["content"].split(": ")[-1]
        self.started.append(question)
        self.any_started.set()
        if "wait" in question:
            await self.gate.wait()
        return await super().complete(messages, **kwargs)


async def test_redelivered_message_gets_one_reply(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = ScriptedChatModel("pip install mmdet")
    bot = await bot_factory(config_factory(), [adapter], llm)
    message = make_message(platform_message_id="evt-1")

    first = await bot.inbox.receive(message)
    await bot.join()
    again = [await bot.inbox.receive(message) for _ in range(4)]
    await bot.join()

    assert not first.duplicate
    assert all(s.duplicate and s.id == first.id for s in again)
    assert len(adapter.sent) == 1
    assert len(llm.calls) == 1
    view = await bot.inbox.message_view(first.id)
    assert view["status"] == "answered"
    assert view["reply"]["text"] == "pip install mmdet"
    assert [s["name"] for s in view["trace"]] == ["normalize", "generate", "send"]


async def test_conversations_run_concurrently_and_in_order(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = GatedModel()
    bot = await bot_factory(config_factory(), [adapter], llm)

    await bot.inbox.receive(make_message(conversation_id="A", text="please wait for me"))
    await bot.inbox.receive(make_message(conversation_id="A", text="second in A", sender_id="bob"))
    await bot.inbox.receive(make_message(conversation_id="B", text="only in B"))

    # B is answered while A's first question is still held by the model
    for _ in range(200):
        if len(adapter.sent) == 1:
            break
        await asyncio.sleep(0.01)
    assert [reply.text for _, reply in adapter.sent] == ["answer to only in B"]
    assert "second in A" not in llm.started  # A stays in order behind its first message

    llm.gate.set()
    await bot.join()
    texts = [reply.text for _, reply in adapter.sent]
    assert texts == [
        "answer to only in B",
        "answer to please wait for me",
        "answer to second in A",
    ]


async def test_backlog_beyond_the_limit_is_stored_and_marked_overloaded(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = GatedModel()
    config = config_factory({"queue": {"max_pending_per_conversation": 1}})
    bot = await bot_factory(config, [adapter], llm)

    held = await bot.inbox.receive(make_message(text="wait here", sender_id="a"))
    await asyncio.wait_for(llm.any_started.wait(), 10)
    queued = await bot.inbox.receive(make_message(text="queued", sender_id="b"))
    dropped = await bot.inbox.receive(make_message(text="one too many", sender_id="c"))
    llm.gate.set()
    await bot.join()

    assert (await bot.inbox.message_view(held.id))["status"] == "answered"
    assert (await bot.inbox.message_view(queued.id))["status"] == "answered"
    view = await bot.inbox.message_view(dropped.id)
    assert view["status"] == "ignored"
    assert view["decision"].startswith("ignored: overloaded")
    assert view["text"] == "one too many"  # stored, not lost


async def test_burst_from_one_sender_is_merged_into_one_question(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = ScriptedChatModel("merged answer")
    bot = await bot_factory(config_factory({"queue": {"debounce_seconds": 0.3}}), [adapter], llm)

    first = await bot.inbox.receive(make_message(text="hi all"))
    second = await bot.inbox.receive(make_message(text="how do I install mmcv on windows?"))
    await bot.join()

    assert len(llm.calls) == 1
    assert "hi all\nhow do I install mmcv on windows?" in llm.calls[0][-1]["content"]
    assert (await bot.inbox.message_view(first.id))["status"] == "answered"
    merged = await bot.inbox.message_view(second.id)
    assert (merged["status"], merged["decision"]) == ("ignored", f"merged into #{first.id}")
    assert merged["merged_into_id"] == first.id


async def test_history_of_the_conversation_reaches_the_prompt(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    llm = ScriptedChatModel(["use mmcv 2.x", "yes, with CUDA 11.8"])
    bot = await bot_factory(config_factory(), [RecordingAdapter()], llm)
    await bot.inbox.receive(make_message(text="which mmcv for mmdet 3?", sender_name="Ann"))
    await bot.join()
    await bot.inbox.receive(make_message(text="does it work with CUDA 11.8?", sender_name="Ann"))
    await bot.join()
    prompt = llm.calls[1][-1]["content"]
    assert "Ann: which mmcv for mmdet 3?" in prompt
    assert "HuixiangDou: use mmcv 2.x" in prompt


async def test_send_is_retried_then_succeeds(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter(failures=2)
    bot = await bot_factory(config_factory(), [adapter], ScriptedChatModel("ok"))
    stored = await bot.inbox.receive(make_message())
    await bot.join()
    view = await bot.inbox.message_view(stored.id)
    assert view["status"] == "answered"
    assert view["reply"]["attempts"] == 3
    assert view["trace"][-1]["detail"]["attempts"] == 3


async def test_permanent_send_error_marks_failed_and_keeps_the_reply(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter(failures=10, retryable=False)
    bot = await bot_factory(config_factory(), [adapter], ScriptedChatModel("kept"))
    stored = await bot.inbox.receive(make_message())
    await bot.join()
    view = await bot.inbox.message_view(stored.id)
    assert adapter.attempts == 1
    assert view["status"] == "failed"
    assert view["decision"] == "failed: send: SendError: platform said no"
    assert view["reply"]["status"] == "failed"
    assert view["reply"]["text"] == "kept"


async def test_pipeline_error_marks_the_message_failed_with_its_trace(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    config = config_factory({"pipeline": ["normalize", "tests.plugins:Boom"]})
    bot = await bot_factory(config, [RecordingAdapter()])
    stored = await bot.inbox.receive(make_message())
    await bot.join()
    view = await bot.inbox.message_view(stored.id)
    assert view["status"] == "failed"
    assert view["decision"] == "failed: ValueError: middleware exploded"
    assert view["trace"][-1]["verdict"].startswith("error: ValueError")


async def test_restart_resumes_unfinished_and_expires_old_messages(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    """What a crash leaves behind: one message mid-pipeline, one whose reply was stored but not
    sent, and one too old to be worth answering now."""
    config = config_factory({"queue": {"resume_max_age_minutes": 30}})
    crashed = await bot_factory(config, [RecordingAdapter()], start=False)
    db = crashed.db

    processing = db.run_sync(repo.insert_message, make_message(text="mid pipeline"))
    db.run_sync(repo.set_status, [processing.id], "processing")
    replying = db.run_sync(repo.insert_message, make_message(text="reply stored"))
    db.run_sync(repo.store_reply, replying.id, Reply(text="stored answer"), "answered", [])
    stale = db.run_sync(repo.insert_message, make_message(text="from yesterday"))

    def age(session: Any) -> None:
        session.get(MessageRecord, stale.id).received_at = utcnow() - timedelta(hours=20)

    db.run_sync(age)

    adapter = RecordingAdapter()
    llm = ScriptedChatModel("fresh answer")
    await bot_factory(config, [adapter], llm)  # the restart
    restarted = await bot_factory(config, [RecordingAdapter(name="other")], start=False)
    for _ in range(300):
        views = [restarted.db.run_sync(repo.message_view, s.id) for s in (processing, replying)]
        if all(v["status"] == "answered" for v in views):
            break
        await asyncio.sleep(0.01)

    assert sorted(reply.text for _, reply in adapter.sent) == ["fresh answer", "stored answer"]
    assert len(llm.calls) == 1  # the stored reply was resent, not regenerated
    expired = db.run_sync(repo.message_view, stale.id)
    assert expired["status"] == "expired"
    assert expired["decision"].startswith("ignored: expired")


async def test_a_group_non_answer_replaces_silence_only_when_the_bot_was_mentioned(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RecordingAdapter()
    llm = ScriptedChatModel("an answer")
    config = config_factory(
        {
            "pipeline": ["normalize", "tests.plugins:RequireKeyword", "generate"],
            "groups": {"polite": {"non_answer": "I only answer questions about mmdet."}},
        }
    )
    bot = await bot_factory(config, [adapter], llm)
    mentioned = await bot.inbox.receive(
        make_message(conversation_id="polite", text="thanks all", mentioned_bot=True)
    )
    unmentioned = await bot.inbox.receive(make_message(conversation_id="polite", text="lol"))
    elsewhere = await bot.inbox.receive(make_message(text="thanks all", mentioned_bot=True))
    await bot.join()

    [(delivery, reply)] = adapter.sent
    assert delivery.conversation_id == "polite"
    assert reply.text == "I only answer questions about mmdet."
    view = await bot.inbox.message_view(mentioned.id)
    assert view["status"] == "answered"
    step = next(s for s in view["trace"] if s["name"] == "non_answer")
    assert step["detail"] == {"instead_of": "ignored: chitchat"}
    for silent in (unmentioned, elsewhere):
        view = await bot.inbox.message_view(silent.id)
        assert (view["status"], view["decision"]) == ("ignored", "ignored: chitchat")
    assert llm.calls == []


class RouteNotingAdapter(RecordingAdapter):
    """Notes the route it took in the delivery, as a platform with two routes does."""

    async def send(self, delivery: Any, reply: Any) -> str | None:
        delivery.detail["route"] = f"route-{self.attempts + 1}"
        return await super().send(delivery, reply)


async def test_the_adapters_note_reaches_the_send_step(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    adapter = RouteNotingAdapter(failures=1)
    bot = await bot_factory(config_factory(), [adapter], ScriptedChatModel("ok"))
    stored = await bot.inbox.receive(make_message())
    await bot.join()
    view = await bot.inbox.message_view(stored.id)
    send = view["trace"][-1]
    assert send["name"] == "send"
    assert send["detail"] == {"attempts": 2, "platform": "playground", "route": "route-2"}
