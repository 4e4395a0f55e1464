"""Webhook mode end to end: the fake Feishu posts encrypted, signed callbacks to the bot's
route; the real SDK checks them, the real core answers, and the fake records the replies."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.adapters.feishu.conftest import (
    ANSWER,
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuBot,
    MakeFeishuBot,
)
from tests.adapters.feishu.fake_feishu import Failure, encrypt, load_event, signed_request
from tests.fakes import GatedChatModel

pytestmark = pytest.mark.integration

CHAT = "oc_5ce6d572455d361153b7xx51da133945"


def event(name: str, fb: FeishuBot, **overrides: object) -> dict:
    """A recorded callback carrying this app's verification token and bot open id."""
    overrides.setdefault("token", VERIFICATION_TOKEN)
    return load_event(name, app_id=fb.fake.app_id, **overrides)


async def test_url_verification_plain_and_encrypted(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    challenge = load_event("url_verification.json", token=VERIFICATION_TOKEN)
    plain = await fb.post_raw(json.dumps(challenge).encode(), {"Content-Type": "application/json"})
    assert plain.status_code == 200
    assert plain.json() == {"challenge": "ajls384kdjx98XX"}

    # With an encrypt key set, Feishu sends the challenge encrypted (and unsigned).
    body = json.dumps({"encrypt": encrypt(json.dumps(challenge).encode(), ENCRYPT_KEY)})
    encrypted = await fb.post_raw(body.encode(), {"Content-Type": "application/json"})
    assert encrypted.status_code == 200
    assert encrypted.json() == {"challenge": "ajls384kdjx98XX"}

    forged = load_event("url_verification.json", token="not-the-token")
    refused = await fb.post_raw(json.dumps(forged).encode(), {})
    assert refused.status_code == 401
    assert await fb.messages() == []


async def test_group_question_answered_in_thread_with_citations(
    feishu_bot: MakeFeishuBot,
) -> None:
    fb = await feishu_bot()
    question = event("text_group.json", fb)
    response = await fb.post(question)
    assert response.status_code == 200
    assert response.json() == {"msg": "success"}

    view = await fb.only_message()
    assert view["platform"] == "feishu"
    assert view["conversation_id"] == CHAT
    assert view["status"] == "answered", view
    assert [s["name"] for s in view["trace"]] == [
        "normalize",
        "questions_only",
        "static_chunks",
        "generate",
        "cite_all",
        "send",
    ]
    [sent] = fb.fake.sent
    assert sent.kind == "reply"
    assert sent.target == question["event"]["message"]["message_id"]
    assert sent.reply_in_thread is True
    assert sent.msg_type == "post"
    assert sent.uuid.startswith("hxd-")
    paragraphs = sent.content["zh_cn"]["content"]
    assert paragraphs[0] == [{"tag": "text", "text": ANSWER}]
    assert paragraphs[1] == [{"tag": "text", "text": "References:"}]
    assert paragraphs[2] == [{"tag": "text", "text": "[1] docs/en/get_started.md § Installation"}]
    url = "https://mmdetection.readthedocs.io/en/latest/get_started.html"
    assert paragraphs[3] == [
        {"tag": "text", "text": "[2] "},
        {"tag": "a", "text": "Get started", "href": url},
    ]
    raw = await fb.raw(view["id"])
    assert raw["message_type"] == "text"
    assert raw["chat_type"] == "group"
    assert raw["event_id"] == question["header"]["event_id"]


async def test_chitchat_is_stored_and_ignored(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    response = await fb.post(event("text_group.json", fb, text="haha, thanks everyone"))
    assert response.status_code == 200
    view = await fb.only_message()
    assert view["status"] == "ignored"
    assert view["decision"] == "ignored: chitchat"
    assert fb.fake.sent == []
    assert fb.llm.calls == []


async def test_mentions_with_require_mention(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot(groups={CHAT: {"require_mention": True}})
    bot_id = fb.fake.bot_open_id
    await fb.post(event("text_group.json", fb))  # nobody mentioned
    await fb.post(event("text_group_mention_other.json", fb))  # someone else mentioned
    await fb.post(event("text_group_mention.json", fb, bot_open_id=bot_id))
    await fb.bot.join()
    plain, other, mentioned = await fb.messages()

    assert plain["mentioned_bot"] is False
    assert plain["decision"] == "ignored: not-mentioned"
    assert other["mentioned_bot"] is False
    assert other["text"] == "@AliceWang how do I install mmdetection with CUDA 12?"
    assert other["decision"] == "ignored: not-mentioned"
    assert mentioned["mentioned_bot"] is True
    assert mentioned["text"] == "@HuixiangDou How do I install mmdetection with CUDA 12?"
    assert mentioned["status"] == "answered"
    assert len(fb.fake.sent) == 1
    # The placeholder and the bot's name never reach the model.
    prompt = json.dumps(fb.llm.calls[0], ensure_ascii=False)
    assert "How do I install mmdetection with CUDA 12?" in prompt
    assert "@_user_1" not in prompt
    assert "@HuixiangDou" not in prompt
    mentions = (await fb.raw(mentioned["id"]))["mentions"]
    assert mentions == [{"name": "HuixiangDou", "open_id": bot_id}]


async def test_p2p_counts_as_addressed_and_replies_without_thread(
    feishu_bot: MakeFeishuBot,
) -> None:
    fb = await feishu_bot(groups={"oc_p2p_84aad35d084a": {"require_mention": True}})
    await fb.post(event("text_p2p.json", fb))
    view = await fb.only_message()
    assert view["mentioned_bot"] is True
    assert view["status"] == "answered"
    [sent] = fb.fake.sent
    assert sent.reply_in_thread is False


async def test_post_message_is_flattened_with_code_kept(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    await fb.post(event("post_group.json", fb, bot_open_id=fb.fake.bot_open_id))
    view = await fb.only_message()
    assert view["mentioned_bot"] is True
    assert view["text"] == (
        "Training crashes\n"
        "@HuixiangDou my training crashes with this config, see "
        "issue 1 (https://github.com/open-mmlab/mmdetection/issues/1)\n"
        "```python\nmodel = dict(\n    type='FasterRCNN')\n```\n"
        "What is wrong?"
    )
    assert view["status"] == "answered"
    prompt = fb.llm.calls[0][-1]["content"]
    # (normalize collapses leading spaces on every line, code included: not this adapter's)
    assert "```python\nmodel = dict(\n" in prompt
    assert "type='FasterRCNN')\n```\nWhat is wrong?" in prompt


@pytest.mark.parametrize("name", ["image_group.json", "post_images_only.json"])
async def test_image_only_is_ignored_with_a_trace_entry(
    feishu_bot: MakeFeishuBot, name: str
) -> None:
    fb = await feishu_bot()
    assert (await fb.post(event(name, fb))).status_code == 200
    view = await fb.only_message()
    assert view["status"] == "ignored"
    assert view["decision"] == "ignored: empty"
    [step] = view["trace"]
    assert step["name"] == "normalize"
    assert step["detail"]["kind"] == ("image" if name == "image_group.json" else "post")
    assert fb.fake.sent == []


async def test_messages_from_bots_are_not_stored(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    assert (await fb.post(event("text_from_bot.json", fb))).status_code == 200
    assert await fb.messages() == []


async def test_same_event_five_times_gives_one_reply(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    question = event("text_group.json", fb)
    responses = await asyncio.gather(*(fb.post(question) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    # Redelivered with new event ids (the LRU cannot help): the inbox's unique key does.
    message_id = question["event"]["message"]["message_id"]
    for _ in range(5):
        again = event("text_group.json", fb, message_id=message_id)
        assert (await fb.post(again)).status_code == 200
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert len(fb.fake.sent) == 1
    assert fb.fake.send_attempts == 1


def _stale(fb: FeishuBot) -> tuple[dict[str, str], bytes]:
    return signed_request(event("text_group.json", fb), ENCRYPT_KEY, timestamp=time.time() - 3600)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("bad signature", 401, "bad signature"),
        ("wrong encrypt key", 401, "bad signature"),
        ("bad token", 401, "wrong verification token"),
        ("stale timestamp", 401, "stale request"),
        ("future timestamp", 401, "stale request"),
        ("unsigned event", 401, "without a signature"),
        ("not JSON", 400, "malformed body"),
        ("not an object", 400, "malformed body"),
        ("garbage ciphertext", 401, "bad signature"),
    ],
)
async def test_refused_requests_store_nothing(
    feishu_bot: MakeFeishuBot,
    case: str,
    status: int,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reason goes to the log, once and without a traceback; the answer is the same for
    every refusal with that status (no oracle)."""
    fb = await feishu_bot()
    good = event("text_group.json", fb)
    if case == "bad signature":
        headers, body = signed_request(good, ENCRYPT_KEY, tamper=True)
    elif case == "wrong encrypt key":
        headers, body = signed_request(good, "some-other-apps-key")
    elif case == "bad token":
        forged = event("text_group.json", fb, token="guessed-token")
        headers, body = signed_request(forged, ENCRYPT_KEY)
    elif case == "stale timestamp":
        headers, body = _stale(fb)
    elif case == "future timestamp":
        headers, body = signed_request(good, ENCRYPT_KEY, timestamp=time.time() + 3600)
    elif case == "unsigned event":
        headers, body = signed_request(good, ENCRYPT_KEY)
        headers = {"Content-Type": headers["Content-Type"]}
    elif case == "not JSON":
        headers, body = {"Content-Type": "application/json"}, b"{'encrypt': oops"
    elif case == "not an object":
        headers, body = {"Content-Type": "application/json"}, b"[1, 2, 3]"
    else:
        _, body = signed_request(good, ENCRYPT_KEY)
        body = json.dumps({"encrypt": "bm90IGEgY2lwaGVydGV4dA=="}).encode()
        headers, body = signed_request(good, ENCRYPT_KEY)[0], body
    caplog.clear()
    response = await fb.post_raw(body, headers)
    assert response.status_code == status, response.text
    assert response.json() == {
        "code": status,
        "msg": "refused" if status == 401 else "bad request",
    }
    refusals = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refusals) == 1 and reason in refusals[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    await fb.bot.join()
    assert await fb.messages() == []
    assert fb.fake.sent == []
    assert ENCRYPT_KEY not in response.text and fb.fake.app_secret not in response.text


async def test_unsubscribed_event_types_are_acked_and_dropped(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    other = event("text_group.json", fb)
    other["header"]["event_type"] = "im.chat.updated_v1"
    other["event"] = {"chat_id": CHAT}
    response = await fb.post(other)
    assert response.status_code == 200
    assert await fb.messages() == []


async def test_slow_model_does_not_delay_the_ack(feishu_bot: MakeFeishuBot) -> None:
    model = GatedChatModel(ANSWER)
    fb = await feishu_bot(llm=model)
    response = await fb.post(event("text_group.json", fb))
    # The ack is back while the model has not answered (it waits for the gate).
    assert response.status_code == 200
    await asyncio.wait_for(model.started.wait(), 10)
    [view] = await fb.messages()
    assert view["status"] == "processing"
    assert fb.fake.sent == []
    model.gate.set()
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert len(fb.fake.sent) == 1


async def test_rate_limited_send_is_retried(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    fb.fake.failures = [
        Failure(429, 99991400, "request trigger frequency limit"),
        Failure(400, 230020, "This operation triggers the frequency limit"),
    ]
    await fb.post(event("text_group.json", fb))
    view = await fb.only_message()
    assert view["status"] == "answered"
    assert view["reply"]["attempts"] == 3
    assert fb.fake.send_attempts == 3
    assert len(fb.fake.sent) == 1


async def test_other_send_errors_fail_at_once_with_code_and_message(
    feishu_bot: MakeFeishuBot,
) -> None:
    fb = await feishu_bot()
    fb.fake.failures = [Failure(400, 230002, "Bot/User can NOT be out of the chat.")]
    await fb.post(event("text_group.json", fb))
    view = await fb.only_message()
    assert view["status"] == "failed"
    assert fb.fake.send_attempts == 1
    error = view["reply"]["error"]
    assert "230002" in error and "Bot/User can NOT be out of the chat." in error
    assert fb.fake.app_secret not in error and fb.fake.tenant_token not in error


async def test_quoted_reply_carries_the_quoted_text(feishu_bot: MakeFeishuBot) -> None:
    fb = await feishu_bot()
    first = event("text_group.json", fb, message_id="om_earlier_question")
    await fb.post(first)
    await fb.bot.join()
    await fb.post(event("text_group_reply.json", fb))
    await fb.bot.join()
    question, follow_up = await fb.messages()
    raw = await fb.raw(follow_up["id"])
    assert raw["parent_id"] == "om_earlier_question"
    assert raw["root_id"] == "om_earlier_question"
    assert raw["thread_id"] == "omt_1a2b3c"
    assert raw["quoted_text"] == question["text"]
