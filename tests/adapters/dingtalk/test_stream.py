"""Receiving over the stream: the SDK's client (in the adapter's thread) opens its connection at
the fake's gateway and gets robot messages and SYSTEM frames from the fake websocket; the real
core stores and answers them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.adapters.dingtalk.conftest import MakeDingTalkBot
from tests.adapters.dingtalk.fake_dingtalk import BOT_TOPIC
from tests.contracts.adapter import ANSWER, stored_count
from tests.fakes import GatedChatModel

pytestmark = pytest.mark.integration


async def test_subscribes_to_robot_messages_with_the_configured_credentials(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    assert dt.fake.subscriptions == [{"type": "CALLBACK", "topic": BOT_TOPIC}]
    assert dt.adapter.health() == {"status": "ok", "mode": "stream"}


async def test_the_ack_is_sent_once_stored_while_a_slow_model_still_runs(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    model = GatedChatModel(ANSWER)
    dt = await dingtalk_bot(llm=model)
    ack = await dt.deliver(dt.fake.message())
    assert ack["code"] == 200
    assert ack["headers"]["contentType"] == "application/json"
    assert json.loads(ack["data"]) == {"response": "stored"}
    assert not model.gate.is_set() and await stored_count(dt.bot) == 1
    assert dt.fake.sent == []
    model.gate.set()
    view = await dt.only_message()
    assert view["status"] == "answered"


async def test_a_ping_is_echoed(dingtalk_bot: MakeDingTalkBot) -> None:
    dt = await dingtalk_bot()
    frame_id, opaque = await dt.fake.ping()
    await dt.fake.wait_for(lambda: dt.fake.ack_for(frame_id) is not None)
    ack = dt.fake.ack_for(frame_id)
    assert ack is not None and ack["code"] == 200
    assert json.loads(ack["data"]) == opaque


async def test_a_disconnect_frame_reconnects_and_later_messages_are_answered(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    await dt.deliver(dt.fake.message(text="How do I install mmdet?"))
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 1)

    await dt.fake.disconnect()
    await dt.fake.wait_for(lambda: dt.fake.connections == 2 and dt.fake.connected)
    assert dt.fake.open_requests == 2  # a fresh ticket for the new connection

    ack = await dt.deliver(dt.fake.message(text="And how do I check that mmcv uses the GPU?"))
    assert ack["code"] == 200
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 2)
    await dt.bot.join()
    assert [m["status"] for m in await dt.messages()] == ["answered", "answered"]


async def test_a_dropped_socket_reconnects_with_backoff_and_nothing_is_lost(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    model = GatedChatModel(ANSWER)
    dt = await dingtalk_bot(llm=model)
    await dt.deliver(dt.fake.message(text="How do I install mmdet?"))
    await asyncio.wait_for(model.started.wait(), 10)

    # The gateway goes away mid-answer and refuses new connections for a while.
    dt.fake.open_down = True
    await dt.fake.drop()
    await dt.fake.wait_for(lambda: dt.fake.open_requests >= 4)
    assert not dt.fake.connected
    assert dt.adapter.health()["status"] == "disconnected"
    dt.fake.open_down = False
    await dt.fake.wait_for(lambda: dt.fake.connected)

    model.gate.set()  # the answer in flight still goes out (the sessionWebhook is HTTP)
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 1)
    await dt.deliver(dt.fake.message(text="And where are the configs?"))
    await dt.fake.wait_for(lambda: len(dt.fake.sent) == 2)
    await dt.bot.join()
    assert [m["status"] for m in await dt.messages()] == ["answered", "answered"]


async def test_wrong_credentials_keep_retrying_and_say_why(
    dingtalk_bot: MakeDingTalkBot, caplog: pytest.LogCaptureFixture
) -> None:
    dt = await dingtalk_bot(connect=False, client_secret="not-the-secret")
    await dt.fake.wait_for(lambda: dt.fake.open_requests >= 2)
    assert not dt.fake.connected
    failures = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert failures and "code authFailed" in failures[0]
    assert "check client_id and client_secret" in failures[0]
    assert "not-the-secret" not in caplog.text


async def test_a_malformed_frame_is_logged_once_and_the_client_stays(
    dingtalk_bot: MakeDingTalkBot, caplog: pytest.LogCaptureFixture
) -> None:
    dt = await dingtalk_bot()
    frame_id = await dt.fake.push_frame("CALLBACK", BOT_TOPIC, "{not json")
    await dt.fake.wait_for(lambda: dt.fake.ack_for(frame_id) is not None)
    ack = dt.fake.ack_for(frame_id)
    assert ack is not None and ack["code"] == 400
    lines = [r for r in caplog.records if frame_id in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None  # one line, no traceback

    ack = await dt.deliver(dt.fake.message())
    assert ack["code"] == 200 and dt.fake.connections == 1


async def test_the_same_msgid_in_five_frames_is_answered_once(
    dingtalk_bot: MakeDingTalkBot,
) -> None:
    dt = await dingtalk_bot()
    message = dt.fake.message()
    acks = [await dt.deliver(message) for _ in range(5)]
    assert [a["code"] for a in acks] == [200] * 5
    assert json.loads(acks[0]["data"]) == {"response": "stored"}
    assert {json.loads(a["data"])["response"] for a in acks[1:]} == {"duplicate"}
    view = await dt.only_message()
    assert view["status"] == "answered"
    assert len(dt.fake.sent) == 1 and len(dt.llm.calls) == 1


async def test_stop_closes_the_stream(dingtalk_bot: MakeDingTalkBot) -> None:
    dt = await dingtalk_bot()
    await dt.adapter.stop()
    await dt.fake.wait_for(lambda: not dt.fake.connected)
    assert dt.adapter.health()["status"] == "disconnected"
    opened = dt.fake.open_requests
    await dt.adapter.stop()  # twice is harmless
    assert dt.fake.open_requests == opened
