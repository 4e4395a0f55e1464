"""Sending through the fake WeCom: long answers split within 2048 UTF-8 bytes, rate limits and
expired tokens, errors with WeCom's code in the trace, the group robot and the AI bot's
single-use response_url."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.common.split import utf8_size
from bot.adapter import REPLY_EXPIRES_AT, Delivery, SendError
from bot.message import Reply
from bot.storage import repo
from tests.adapters.wecom.conftest import (
    APP_CHAT,
    ROBOT_CHAT,
    USER,
    MakeWeComBot,
)
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration

QUESTION = "怎么安装 mmcv？"
SENTENCE = "安装 mmcv 需要匹配 CUDA 版本的预编译包，请先确认驱动版本，再选择对应的 wheel 索引。"
PARAGRAPH = SENTENCE * 6
CODE = (
    "```bash\npip install -U openmim\nmim install 'mmcv>=2.0.0'\n"
    "# 验证：python -c 'import mmcv'\n```"
)
LONG = "\n\n".join([PARAGRAPH] * 6 + [CODE] + [PARAGRAPH] * 6)


@pytest.mark.parametrize("message_format", ["text", "markdown"])
async def test_a_long_chinese_answer_is_split_within_2048_bytes(
    wecom_bot: MakeWeComBot, message_format: str
) -> None:
    wb = await wecom_bot(llm=ScriptedChatModel(LONG), app={"message_format": message_format})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "answered", view
    texts = wb.fake.texts()
    assert len(texts) >= 3
    assert all(utf8_size(t) <= 2048 for t in texts), [utf8_size(t) for t in texts]
    # Nothing lost or cut through a character: every paragraph arrives whole, once.
    assert sum(t.count(PARAGRAPH) for t in texts) == 12
    assert "\ufffd" not in "".join(texts)
    # The code block is one message's, whole; the citations come last, whole.
    assert sum(CODE in t for t in texts) == 1
    assert "docs/en/get_started.md § Installation" in texts[-1]
    assert all("get_started" not in t for t in texts[:-1])


async def test_a_code_block_longer_than_a_message_is_cut_at_line_ends(
    wecom_bot: MakeWeComBot,
) -> None:
    lines = [
        f"python tools/train.py configs/模型_{i:03d}.py --work-dir 工作目录/{i}" for i in range(60)
    ]
    answer = "训练命令如下：\n\n```bash\n" + "\n".join(lines) + "\n```"
    wb = await wecom_bot(llm=ScriptedChatModel(answer))
    await wb.post_app(wb.question_xml(QUESTION))
    assert (await wb.only_message())["status"] == "answered"
    texts = wb.fake.texts()
    assert len(texts) >= 2 and all(utf8_size(t) <= 2048 for t in texts)
    joined = "\n".join(texts)
    assert all(line in joined for line in lines)  # every line whole


async def test_a_part_refused_as_too_long_is_split_and_sent_again(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(llm=ScriptedChatModel(LONG), fake_options={"max_content_bytes": 1000})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "answered", view
    texts = wb.fake.texts()
    assert all(utf8_size(t) <= 1000 for t in texts)
    assert "".join(texts).count(SENTENCE) == 12 * 6
    assert "docs/en/get_started.md § Installation" in texts[-1]


async def test_rate_limit_45009_is_retried_with_backoff(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot(fake_options={"failures": [45009, 45009]})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "answered", view
    assert wb.fake.send_attempts == 3
    assert len(wb.fake.sent) == 1
    send = next(step for step in view["trace"] if step["name"] == "send")
    assert send["detail"]["attempts"] == 3


async def test_parts_sent_before_a_rate_limit_are_not_sent_again(
    wecom_bot: MakeWeComBot,
) -> None:
    # The second part hits 45009; the outbox's retry posts only the parts still missing.
    wb = await wecom_bot(llm=ScriptedChatModel(LONG), fake_options={"failures": [None, 45009]})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "answered", view
    texts = wb.fake.texts()
    assert sum(t.count(PARAGRAPH) for t in texts) == 12  # none twice
    assert wb.fake.send_attempts == len(texts) + 1  # one refused, none repeated


async def test_an_expired_token_is_fetched_again_once(
    wecom_bot: MakeWeComBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wb = await wecom_bot()
    await wb.post_app(wb.question_xml(QUESTION))
    await wb.bot.join()
    assert wb.fake.token_requests == 1
    wb.fake.expire_tokens()
    await wb.post_app(wb.question_xml("还有别的装法吗？"))
    await wb.bot.join()
    statuses = [m["status"] for m in await wb.messages()]
    assert statuses == ["answered", "answered"]
    assert wb.fake.token_requests == 2
    assert len(wb.fake.sent) == 2
    # urllib3 logs each request's path at DEBUG: secret and tokens are not in it.
    assert "corpsecret=***" in caplog.text and "access_token=***" in caplog.text
    for secret in (wb.fake.secret, *wb.fake.tokens):
        assert secret not in caplog.text


async def test_a_token_refused_again_after_refreshing_fails_the_message(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(fake_options={"failures": [42001, 40014]})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert "errcode 40014" in view["decision"]
    assert wb.fake.token_requests == 2  # the first token, and one refresh: no loop
    assert wb.fake.sent == []


async def test_other_errors_fail_the_message_with_wecoms_code(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot(fake_options={"failures": [60020]})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert view["decision"].startswith("failed: send: SendError: wecom: message/send to")
    assert "errcode 60020" in view["decision"]
    assert "Trusted IPs" in view["decision"]
    assert wb.fake.send_attempts == 1  # not retried


async def test_a_member_outside_the_visible_range_fails_the_message(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(fake_options={"visible_users": {"lisi"}})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert "errcode 81013" in view["decision"] and "Visible Range" in view["decision"]


async def test_wrong_secret_fails_with_the_code_and_without_the_secret(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(app={"secret": "not-the-secret"})
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert "errcode 40001" in view["decision"] and "app secret is wrong" in view["decision"]
    assert "not-the-secret" not in str(view)


async def test_an_unreachable_api_is_retried_and_the_secret_stays_out_of_the_trace(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(api_base_url="http://127.0.0.1:9")
    await wb.post_app(wb.question_xml(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "failed"
    send = next(step for step in view["trace"] if step["name"] == "send")
    assert send["detail"]["attempts"] > 1  # a connection error is worth another try
    assert "ConnectionError" in view["decision"]
    assert wb.fake.secret not in str(view)
    assert "corpsecret=***" in view["decision"]


async def test_an_app_created_group_chat_is_answered_with_appchat_send(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot()
    await wb.post_app(wb.question_xml(QUESTION, chat_id=APP_CHAT))
    view = await wb.only_message()
    assert view["status"] == "answered"
    assert view["conversation_id"] == APP_CHAT
    [sent] = wb.fake.sent
    assert (sent.kind, sent.target) == ("appchat", APP_CHAT)


@pytest.mark.parametrize("message_format", ["markdown", "text"])
async def test_the_group_robot_posts_answers_and_mentions_the_asker(
    wecom_bot: MakeWeComBot, message_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wb = await wecom_bot(llm=ScriptedChatModel(LONG), robot={"message_format": message_format})
    payload = wb.bot_payload(QUESTION, chat_id=ROBOT_CHAT)
    await wb.post_bot(payload)
    view = await wb.only_message()
    assert view["status"] == "answered", view
    sent = wb.fake.sent
    assert len(sent) >= 3 and {s.kind for s in sent} == {"webhook"}
    assert {s.target for s in sent} == {wb.robot_key}
    assert all(utf8_size(s.content) <= 2048 for s in sent)
    if message_format == "markdown":
        assert sent[0].content.startswith(f"<@{USER}>\n")
        assert not any(s.content.startswith("<@") for s in sent[1:])
    else:
        assert [s.mentioned_list for s in sent] == [[USER]] + [[]] * (len(sent) - 1)
    # The response_url stays unused (WeCom takes one call on it).
    assert payload["response_url"].split("=")[-1] in wb.fake.response_codes
    # httpx logs each request's URL: the robot's key is not in it.
    assert "/cgi-bin/webhook/send?key=***" in caplog.text
    assert wb.robot_key not in caplog.text


async def test_a_wrong_robot_key_fails_with_93000(wecom_bot: MakeWeComBot) -> None:
    wb = await wecom_bot(robot={"key": "no-such-key"})
    await wb.post_bot(wb.bot_payload(QUESTION, chat_id=ROBOT_CHAT))
    view = await wb.only_message()
    assert view["status"] == "failed"
    assert "errcode 93000" in view["decision"] and "removed from the group" in view["decision"]
    assert "no-such-key" not in str(view)


async def test_the_ai_bot_answers_once_shortened_to_one_message(
    wecom_bot: MakeWeComBot,
) -> None:
    wb = await wecom_bot(llm=ScriptedChatModel(LONG), bot_max_message_bytes=4096)
    await wb.post_bot(wb.bot_payload(QUESTION))
    view = await wb.only_message()
    assert view["status"] == "answered", view
    [sent] = wb.fake.sent
    assert sent.kind == "response"
    assert utf8_size(sent.content) <= 4096
    assert sent.content.count(PARAGRAPH) >= 1
    assert "…" in sent.content
    assert "docs/en/get_started.md § Installation" in sent.content  # citations kept


async def test_an_expired_response_url_is_not_used(wecom_bot: MakeWeComBot) -> None:
    """WeCom honours a response_url for an hour: a reply that comes later fails at once, and
    is not retried."""
    wb = await wecom_bot()
    payload = wb.bot_payload(QUESTION)
    await wb.post_bot(payload)
    view = await wb.only_message()
    message = await wb.bot.db.run(repo.load_message, view["id"])
    expires = datetime.fromisoformat(message.raw[REPLY_EXPIRES_AT])
    assert timedelta(minutes=58) < expires - message.sent_at <= timedelta(hours=1)
    # The same delivery an hour later (the stored answer went out already; a fresh one).
    delivery = Delivery.for_message(message, view["id"] + 1000)
    later = replace(delivery, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(SendError, match="response_url expired") as error:
        await wb.adapter.send(later, Reply("答案"))
    assert error.value.retryable is False
    assert len(wb.fake.sent) == 1
