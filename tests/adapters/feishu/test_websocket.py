"""Websocket mode end to end: the SDK's ws.Client (in the adapter's thread) fetches its URL
from the fake's /callback/ws/endpoint and receives protobuf event frames from the fake
gateway; the real core answers through the fake open API."""

from __future__ import annotations

import asyncio

import pytest

from adapters.feishu.adapter import _websocket_lock
from tests.adapters.feishu.conftest import ANSWER, VERIFICATION_TOKEN, FeishuBot, MakeFeishuBot
from tests.adapters.feishu.fake_feishu import load_event
from tests.fakes import GatedChatModel

pytestmark = [
    pytest.mark.integration,
    # lark-oapi's own logging call, when a ping finds the socket gone
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]


def event(name: str, fb: FeishuBot, **overrides: object) -> dict:
    overrides.setdefault("token", VERIFICATION_TOKEN)
    return load_event(name, app_id=fb.fake.app_id, **overrides)


async def connected(feishu_bot: MakeFeishuBot, **options: object) -> FeishuBot:
    fb = await feishu_bot("websocket", **options)
    await fb.fake.wait_for(lambda: fb.fake.connected)
    return fb


async def test_group_question_over_websocket(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    assert fb.adapter.routes == []  # nothing to expose in this mode
    question = event("text_group.json", fb)
    frame_id = await fb.fake.push_event(question)
    await fb.fake.wait_for(lambda: fb.fake.ack_for(frame_id) is not None)
    assert fb.fake.ack_for(frame_id)["code"] == 200

    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    view = await fb.only_message()
    assert view["status"] == "answered"
    [sent] = fb.fake.sent
    assert sent.kind == "reply"
    assert sent.target == question["event"]["message"]["message_id"]
    assert sent.reply_in_thread is True
    assert "References:" in sent.text()


async def test_fragmented_event_is_reassembled(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    question = event("post_group.json", fb, bot_open_id=fb.fake.bot_open_id)
    frame_id = await fb.fake.push_event(question, fragments=3)
    await fb.fake.wait_for(lambda: fb.fake.ack_for(frame_id) is not None)
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    view = await fb.only_message()
    assert view["mentioned_bot"] is True
    assert view["text"].endswith("What is wrong?")
    assert "```python\nmodel = dict(" in view["text"]
    assert view["status"] == "answered"


async def test_reconnects_after_the_gateway_drops_the_socket(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    first = await fb.fake.push_event(event("text_group.json", fb))
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    assert fb.fake.ack_for(first) is not None

    await fb.fake.drop()
    await fb.fake.wait_for(lambda: fb.fake.connections == 2 and fb.fake.connected)
    assert fb.fake.endpoint_requests == 2  # a fresh URL for the new connection

    again = await fb.fake.push_event(
        event("text_group.json", fb, text="And how do I check that mmcv uses the GPU?")
    )
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 2)
    assert fb.fake.ack_for(again)["code"] == 200
    await fb.bot.join()
    assert [m["status"] for m in await fb.messages()] == ["answered", "answered"]


async def test_same_event_five_times_gives_one_reply(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    question = event("text_group.json", fb)
    frames = [await fb.fake.push_event(question) for _ in range(5)]
    await fb.fake.wait_for(lambda: all(fb.fake.ack_for(f) is not None for f in frames))
    assert {fb.fake.ack_for(f)["code"] for f in frames} == {200}
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert len(fb.fake.sent) == 1


async def test_slow_model_does_not_delay_the_ack(feishu_bot: MakeFeishuBot) -> None:
    model = GatedChatModel(ANSWER)
    fb = await connected(feishu_bot, llm=model)
    frame_id = await fb.fake.push_event(event("text_group.json", fb))
    await fb.fake.wait_for(lambda: fb.fake.ack_for(frame_id) is not None)
    await asyncio.wait_for(model.started.wait(), 10)
    assert fb.fake.ack_for(frame_id)["code"] == 200
    assert fb.fake.sent == []
    model.gate.set()
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)


async def test_stop_ends_the_websocket_thread(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    thread = fb.adapter._websocket._thread  # type: ignore[union-attr]
    await fb.adapter.stop()
    assert not thread.is_alive()
    await fb.fake.wait_for(lambda: not fb.fake.connected)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
async def test_a_stop_as_it_connects_frees_the_websocket_client(
    feishu_bot: MakeFeishuBot, delay: float
) -> None:
    """A bot stopped just after it started (the SDK still connecting, or starting its ping
    loop): the thread ends, and the process's one websocket client is free for the next."""
    fb = await feishu_bot("websocket")
    thread = fb.adapter._websocket._thread  # type: ignore[union-attr]
    await asyncio.sleep(delay)
    await fb.adapter.stop()
    assert not thread.is_alive()
    assert not _websocket_lock.locked()


async def test_keeps_retrying_through_an_outage(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    fb.fake.endpoint_down = True
    await fb.fake.drop()
    await fb.fake.wait_for(lambda: fb.fake.endpoint_requests >= 3)  # retried every second
    assert not fb.fake.connected
    fb.fake.endpoint_down = False
    await fb.fake.wait_for(lambda: fb.fake.connected)
    await fb.fake.push_event(event("text_group.json", fb))
    await fb.fake.wait_for(lambda: len(fb.fake.sent) == 1)


async def test_stop_while_reconnecting(feishu_bot: MakeFeishuBot) -> None:
    fb = await connected(feishu_bot)
    fb.fake.endpoint_down = True
    await fb.fake.drop()
    await fb.fake.wait_for(lambda: fb.fake.endpoint_requests >= 2)
    thread = fb.adapter._websocket._thread  # type: ignore[union-attr]
    await fb.adapter.stop()
    assert not thread.is_alive()
