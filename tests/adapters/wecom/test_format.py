"""WeCom message formats without a server: quotes, callbacks to Messages, one-message answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.common.split import utf8_size
from adapters.wecom.adapter import one_part
from adapters.wecom.format import (
    Skipped,
    parse_app_callback,
    parse_bot_callback,
    render,
    strip_quote,
)
from bot.message import Reference, Reply
from tests.adapters.wecom.fake_wecom import event_xml, text_xml

pytestmark = pytest.mark.unit

PREFIX = "https://qyapi.weixin.qq.com/cgi-bin/aibot/response"
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "reply", "sender", "quoted"),
    [
        (
            "「张三：装 mmcv 报错了」\n- - - - - - - - - - - - - - -\n是哪个版本？",
            "是哪个版本？",
            "张三",
            "装 mmcv 报错了",
        ),
        # ASCII colon, a quote over several lines, a shorter dashed line
        ("「Bob: line one\nline two」\n- - - - -\nWhy?", "Why?", "Bob", "line one\nline two"),
        # not a quote: no dashed line, or the brackets inside the text
        ("「张三：你好」 大家好", "「张三：你好」 大家好", "", ""),
        ("他说「张三：你好」\n- - - -\n对", "他说「张三：你好」\n- - - -\n对", "", ""),
    ],
)
def test_quotes_are_stripped_wechat_style(text: str, reply: str, sender: str, quoted: str) -> None:
    quote = strip_quote(text)
    assert (quote.text.strip(), quote.sender, quote.quoted) == (reply, sender, quoted)


def test_an_app_text_callback_becomes_a_single_chat_message() -> None:
    xml = text_xml("ww01", "zhangsan", "怎么 <安装> & 配置？", "123456789", create_time=1740816000)
    message = parse_app_callback("docs", xml)
    assert not isinstance(message, Skipped)
    assert message.platform == "wecom"
    assert message.conversation_id == "docs:zhangsan"
    assert message.conversation_type == "p2p"
    assert message.platform_message_id == "docs:123456789"
    assert message.text == "怎么 <安装> & 配置？"
    assert message.mentioned_bot is True
    assert message.sent_at == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    assert message.raw["source"] == "app" and message.raw["message_type"] == "text"


def test_an_app_callback_naming_a_chat_belongs_to_that_group() -> None:
    message = parse_app_callback("docs", text_xml("ww01", "u1", "hi?", "1", chat_id="chat1"))
    assert not isinstance(message, Skipped)
    assert (message.conversation_id, message.conversation_type) == ("chat1", "group")


def test_events_are_keyed_on_sender_time_and_type() -> None:
    message = parse_app_callback("docs", event_xml("ww01", "u1", "enter_agent", 1740816000))
    assert not isinstance(message, Skipped)
    assert message.platform_message_id == "docs:u1:1740816000:enter_agent"
    assert message.text == ""
    assert message.raw["message_type"] == "event:enter_agent"


@pytest.mark.parametrize("xml", ["<xml>", "<notxml/>", "<xml><MsgType>text</MsgType></xml>x"])
def test_unreadable_app_callbacks_raise_value_error(xml: str) -> None:
    with pytest.raises(ValueError, match="not a WeCom callback"):
        parse_app_callback("docs", xml)


def test_an_ai_bot_group_text_with_a_quote() -> None:
    payload = {
        "msgid": "CAIQ1",
        "aibotid": "aib1",
        "chatid": "wrk1",
        "chattype": "group",
        "from": {"userid": "lisi"},
        "response_url": f"{PREFIX}?response_code=abc",
        "msgtype": "text",
        "text": {"content": "@小助手 这个怎么办？"},
        "quote": {"msgtype": "text", "text": {"content": "ImportError: mmcv._ext"}},
    }
    message = parse_bot_callback("helper", payload, PREFIX, NOW)
    assert not isinstance(message, Skipped)
    assert (message.conversation_id, message.conversation_type) == ("wrk1", "group")
    assert message.platform_message_id == "helper:CAIQ1"
    assert message.text == "@小助手 这个怎么办？"
    assert message.raw["quoted_text"] == "ImportError: mmcv._ext"
    assert message.raw["response_url"] == payload["response_url"]
    assert message.raw["reply_expires_at"] == "2025-03-01T08:59:00+00:00"


def test_an_ai_bot_mixed_message_keeps_its_text_and_a_foreign_response_url_is_dropped() -> None:
    payload = {
        "msgid": "CAIQ2",
        "chattype": "single",
        "from": {"userid": "lisi"},
        "response_url": "https://evil.example/cgi-bin/aibot/response?response_code=abc",
        "msgtype": "mixed",
        "mixed": {
            "msg_item": [
                {"msgtype": "text", "text": {"content": "这张图里的报错？"}},
                {"msgtype": "image", "image": {"url": "https://example.invalid/1.png"}},
            ]
        },
    }
    message = parse_bot_callback("helper", payload, PREFIX, NOW)
    assert not isinstance(message, Skipped)
    assert message.conversation_id == "helper:lisi"
    assert message.text == "这张图里的报错？"
    assert message.raw["response_url"] == ""


def test_ai_bot_stream_refreshes_and_senderless_callbacks_are_skipped() -> None:
    stream = {"msgid": "x", "from": {"userid": "u"}, "msgtype": "stream", "stream": {"id": "s"}}
    assert isinstance(parse_bot_callback("helper", stream, PREFIX, NOW), Skipped)
    assert isinstance(parse_bot_callback("helper", {"msgtype": "text"}, PREFIX, NOW), Skipped)


def test_one_part_shortens_a_long_answer_and_keeps_the_references() -> None:
    refs = (
        Reference("docs/install.md", "安装"),
        Reference("web", "Guide", "https://example.com/guide"),
    )
    reply = Reply("\n\n".join(["很长的一段说明文字。" * 30] * 10), refs)
    part = one_part(reply, 2048)
    content = render(part, "markdown")
    assert utf8_size(content) <= 2048
    assert content.count("很长的一段说明文字。" * 30) >= 1
    assert "…" in content
    assert "[1] docs/install.md § 安装" in content
    assert "[2] [Guide](https://example.com/guide)" in content

    short = Reply("一句话。", refs)
    assert one_part(short, 2048).text == "一句话。"
