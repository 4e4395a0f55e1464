"""Robot callbacks (recorded shapes in tests/data/dingtalk) to Messages, and parts to markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.common.parts import Part
from adapters.dingtalk.format import (
    Malformed,
    Skipped,
    markdown_text,
    markdown_title,
    parse_callback,
)
from bot.adapter import REPLY_EXPIRES_AT
from bot.message import Message, Reference

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "dingtalk"


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    data.update(changes)
    return data


def parsed(name: str, **changes: Any) -> Message:
    message = parse_callback(recorded(name, **changes))
    assert isinstance(message, Message), message
    return message


def test_a_group_text_message() -> None:
    message = parsed("text_group.json")
    assert message.platform == "dingtalk"
    assert message.platform_message_id == "msgREPLACEDbyTHEloader=="
    assert message.conversation_id == "cidGroupMmdetUsers0001=="
    assert message.conversation_type == "group"
    assert message.sender_id == "staff-alice" and message.sender_name == "Alice"
    assert message.text == "How do I install mmdetection with CUDA 12?"
    assert message.mentioned_bot is True
    assert message.sent_at == datetime.fromtimestamp(1612172996.026, UTC)
    raw = message.raw
    assert raw["conversation_title"] == "mmdetection users"
    assert raw["session_webhook"].startswith("https://oapi.dingtalk.com/robot/sendBySession")
    assert raw[REPLY_EXPIRES_AT] == datetime.fromtimestamp(1612178396.066, UTC).isoformat()
    assert raw["at_users"] == []  # the robot itself is not listed


def test_mentions_of_other_people_are_kept() -> None:
    message = parsed("text_group_mention_other.json")
    assert message.text.startswith("@Bob do you know")
    assert message.raw["at_users"] == [
        {"dingtalk_id": "$:LWCP_v1:$memberBob0001==", "staff_id": "staff-bob"}
    ]
    assert message.mentioned_bot is True


def test_the_robot_in_the_at_list_counts_when_is_in_at_list_is_missing() -> None:
    data = recorded("text_group.json")
    del data["isInAtList"]
    message = parse_callback(data)
    assert isinstance(message, Message) and message.mentioned_bot is True
    data["atUsers"] = []
    message = parse_callback(data)
    assert isinstance(message, Message) and message.mentioned_bot is False


def test_rich_text_keeps_the_text_and_notes_the_pictures() -> None:
    message = parsed("rich_text_group.json")
    assert message.text == "训练时报错，截图如下\nCUDA out of memory 该怎么办？"
    assert message.raw["message_type"] == "richText"
    assert message.raw["pictures"] == 1


def test_a_picture_in_a_single_chat() -> None:
    message = parsed("picture_single.json")
    assert message.text == ""
    assert message.conversation_type == "p2p" and message.mentioned_bot is True
    assert message.raw["message_type"] == "picture" and message.raw["pictures"] == 1


def test_other_message_types_arrive_with_no_text() -> None:
    message = parsed("text_single.json", msgtype="file", content={"fileName": "a.pdf"})
    assert message.text == "" and message.raw["message_type"] == "file"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], Malformed),
        ("text", Malformed),
        (recorded("text_group.json", msgId=""), Malformed),
        (recorded("text_group.json", conversationId=None), Malformed),
        (recorded("text_group.json", text="not an object"), Malformed),
        (recorded("text_group.json", sessionWebhookExpiredTime="soon"), Malformed),
        (recorded("text_group.json", conversationType="3"), Skipped),
    ],
)
def test_what_is_not_a_robot_message(data: Any, expected: type) -> None:
    assert isinstance(parse_callback(data), expected)


def test_markdown_mentions_first_and_references_last() -> None:
    part = Part(
        "Use mim.",
        (Reference("docs/install.md", "Install"), Reference("w", "Guide", "https://x.org/g")),
        ("staff-alice",),
        label="References",
    )
    assert markdown_text(part) == (
        "@staff-alice\n\nUse mim.\n\n**References**\n[1] docs/install.md § Install\n"
        "[2] [Guide](https://x.org/g)"
    )


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("# 安装\n正文", "安装"),
        ("Short answer", "Short answer"),
        ("A first line that is far too long for a title", "A first line that is fa…"),
        ("", "Answer"),
    ],
)
def test_markdown_title(text: str, title: str) -> None:
    assert markdown_title(text) == title
