"""Sending through the SDK to the fake open API: long answers split, parts refused as too
long split again, idempotent resends, plain messages when there is nothing to reply to, and
clear start-up errors."""

from __future__ import annotations

import pytest

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.settings import FeishuSettings
from bot.adapter import Delivery, SendError
from bot.message import Reference, Reply
from tests.adapters.feishu.conftest import VERIFICATION_TOKEN, FeishuBot, MakeFeishuBot
from tests.adapters.feishu.fake_feishu import Failure, FakeFeishu, load_event
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration

CHAT = "oc_5ce6d572455d361153b7xx51da133945"


def paragraphs(n: int, size: int) -> list[str]:
    return [f"Step {i}: " + ("install the matching wheel " * size)[:size] for i in range(n)]


def event(fb: FeishuBot, **overrides: object) -> dict:
    return load_event(
        "text_group.json", token=VERIFICATION_TOKEN, app_id=fb.fake.app_id, **overrides
    )


def texts(fb: FeishuBot) -> list[str]:
    return [s.text() for s in fb.fake.sent]


async def test_long_answer_is_split_into_threaded_parts(feishu_bot: MakeFeishuBot) -> None:
    parts = paragraphs(5, 1600)
    code = "```bash\npip install -U openmim\nmim install mmcv\n```"
    answer = "\n\n".join([*parts[:2], code, *parts[2:]])
    fb = await feishu_bot(llm=ScriptedChatModel(answer), max_message_chars=3500)
    question = event(fb)
    await fb.post(question)
    view = await fb.only_message()
    assert view["status"] == "answered"

    sent = fb.fake.sent
    assert len(sent) == 3
    assert {s.target for s in sent} == {question["event"]["message"]["message_id"]}
    assert len({s.uuid for s in sent}) == 3
    for message in sent:
        body = "".join(e.get("text", "") for p in message.content["zh_cn"]["content"] for e in p)
        assert len(body) <= 3500
    # Nothing lost, nothing repeated, code block whole, references once, at the end.
    delivered = "\n".join(texts(fb))
    for paragraph in parts:
        assert delivered.count(paragraph) == 1
    code_blocks = [
        e
        for s in sent
        for p in s.content["zh_cn"]["content"]
        for e in p
        if e["tag"] == "code_block"
    ]
    assert code_blocks == [
        {
            "tag": "code_block",
            "language": "BASH",
            "text": "pip install -U openmim\nmim install mmcv",
        }
    ]
    assert [("References:" in t) for t in texts(fb)] == [False, False, True]


async def test_part_refused_as_too_long_is_split_and_resent(feishu_bot: MakeFeishuBot) -> None:
    answer = "\n\n".join(paragraphs(4, 700))
    fb = await feishu_bot(
        llm=ScriptedChatModel(answer),
        max_message_chars=3500,
        fake_options={"max_content_chars": 2000},
    )
    await fb.post(event(fb))
    view = await fb.only_message()
    assert view["status"] == "answered", view
    assert view["reply"]["attempts"] == 1  # handled inside one send, not by retries
    delivered = "\n".join(texts(fb))
    for paragraph in paragraphs(4, 700):
        assert delivered.count(paragraph) == 1
    assert len(fb.fake.sent) >= 2
    assert fb.fake.send_attempts == len(fb.fake.sent) + 1  # the one refusal


async def test_retry_after_a_partial_send_does_not_repeat_parts(
    feishu_bot: MakeFeishuBot,
) -> None:
    answer = "\n\n".join(paragraphs(3, 1500))
    fb = await feishu_bot(llm=ScriptedChatModel(answer), max_message_chars=3500)
    # Part one goes out, part two is rate limited; the outbox retries the whole reply.
    fb.fake.failures = [None, Failure(429, 99991400, "request trigger frequency limit")]
    await fb.post(event(fb))
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert view["reply"]["attempts"] == 2
    assert len(fb.fake.sent) == 2  # part one's resend was dropped by its uuid
    assert fb.fake.send_attempts == 4


async def test_same_delivery_twice_posts_once(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    delivery = Delivery(
        conversation_id=CHAT,
        conversation_type="group",
        in_reply_to="om_question",
        message_id=41,
        raw={},
    )
    reply = Reply(text="Use mim.", references=(Reference(source="docs/install.md"),))
    first = await fb.adapter.send(delivery, reply)
    second = await fb.adapter.send(delivery, reply)
    assert first == second
    assert len(fb.fake.sent) == 1


async def test_without_a_message_to_reply_to_it_creates_one(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    delivery = Delivery(
        conversation_id=CHAT, conversation_type="group", in_reply_to="", message_id=7, raw={}
    )
    reply_id = await fb.adapter.send(
        delivery, Reply(text="Daily tip: use mim.", mentions=("ou_a",))
    )
    [sent] = fb.fake.sent
    assert reply_id == sent.message_id
    assert sent.kind == "create"
    assert sent.target == CHAT
    assert sent.content["zh_cn"]["content"][0][0] == {"tag": "at", "user_id": "ou_a"}


async def test_wrong_app_secret_fails_start_with_a_clear_error() -> None:
    fake = FakeFeishu(app_id="cli_wrong_secret_test", app_secret="the-right-one")
    async with fake.running():
        settings = FeishuSettings(
            app_id=fake.app_id, app_secret="not-the-right-one", domain=fake.url
        )
        adapter = FeishuAdapter(settings)
        with pytest.raises(RuntimeError) as error:
            await adapter.start(inbox=None)  # type: ignore[arg-type]
    message = str(error.value)
    assert "10014" in message and "app secret invalid" in message
    assert "not-the-right-one" not in message


async def test_unreachable_open_api_is_a_retryable_send_error() -> None:
    settings = FeishuSettings(
        app_id="cli_unreachable_test", app_secret="x", domain="http://127.0.0.1:9"
    )
    adapter = FeishuAdapter(settings)
    delivery = Delivery(CHAT, "group", "om_q", 1, {})
    with pytest.raises(SendError) as error:
        await adapter.send(delivery, Reply(text="hello"))
    assert error.value.retryable is True


async def test_refused_token_is_fetched_again_and_the_send_retried(
    feishu_bot: MakeFeishuBot,
) -> None:
    fb = await feishu_bot()
    tokens_before = fb.fake.token_requests
    fb.fake.failures = [Failure(400, 99991663, "Invalid access token for authorization")]
    await fb.post(event(fb))
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert view["reply"]["attempts"] == 2
    assert fb.fake.token_requests == tokens_before + 1
