"""The pure parts: recorded callbacks to Messages, replies to `post` parts."""

from __future__ import annotations

import json

import pytest

from adapters.common.parts import Part, plan_parts, split_part
from adapters.feishu.format import Skipped, flatten_post, parse_message_event, post_content
from bot.message import Message, Reference, Reply
from tests.adapters.feishu.fake_feishu import load_event

pytestmark = pytest.mark.unit

BOT = "ou_bot_huixiangdou"


def parse(name: str, **overrides: object) -> Message:
    parsed = parse_message_event(load_event(name, **overrides), BOT)
    assert isinstance(parsed, Message), parsed
    return parsed


def test_text_event() -> None:
    message = parse("text_group.json", message_id="om_1", event_id="ev_1")
    assert message.platform == "feishu"
    assert message.platform_message_id == "om_1"
    assert message.conversation_id == "oc_5ce6d572455d361153b7xx51da133945"
    assert message.conversation_type == "group"
    assert message.sender_id == "ou_84aad35d084aa403a838cf73ee18467"
    assert message.text == "How do I install mmdetection with CUDA 12?"
    assert message.mentioned_bot is False
    assert message.raw["event_id"] == "ev_1"
    assert message.raw["message_type"] == "text"
    assert message.sent_at.year >= 2024


def test_mentions_become_names_and_only_the_bot_counts() -> None:
    mentioned = parse("text_group_mention.json", bot_open_id=BOT)
    assert mentioned.mentioned_bot is True
    assert mentioned.text == "@HuixiangDou How do I install mmdetection with CUDA 12?"
    other = parse("text_group_mention_other.json")
    assert other.mentioned_bot is False
    assert other.text.startswith("@AliceWang ")
    # Without the bot's open id nothing counts as a mention of it.
    unknown = parse_message_event(load_event("text_group_mention.json", bot_open_id=BOT), None)
    assert isinstance(unknown, Message) and unknown.mentioned_bot is False


def test_mention_keys_do_not_clash() -> None:
    event = load_event("text_group.json", text="@_user_1 and @_user_10 please look")
    event["event"]["message"]["mentions"] = [
        {"key": "@_user_1", "id": {"open_id": "ou_a"}, "name": "Ann"},
        {"key": "@_user_10", "id": {"open_id": "ou_b"}, "name": "Bob"},
    ]
    message = parse_message_event(event, BOT)
    assert isinstance(message, Message)
    assert message.text == "@Ann and @Bob please look"


def test_p2p_is_addressed_to_the_bot() -> None:
    message = parse("text_p2p.json")
    assert message.conversation_type == "p2p"
    assert message.mentioned_bot is True


def test_post_flattened() -> None:
    message = parse("post_group.json", bot_open_id=BOT)
    assert message.raw["message_type"] == "post"
    assert message.mentioned_bot is True
    assert message.text.splitlines() == [
        "Training crashes",
        "@HuixiangDou my training crashes with this config, see "
        "issue 1 (https://github.com/open-mmlab/mmdetection/issues/1)",
        "```python",
        "model = dict(",
        "    type='FasterRCNN')",
        "```",
        "What is wrong?",
    ]


def test_post_with_a_locale_wrapper_and_bare_links() -> None:
    content = {
        "en_us": {
            "title": "",
            "content": [[{"tag": "a", "href": "https://x.org", "text": "https://x.org"}]],
        }
    }
    assert flatten_post(content) == "https://x.org"


@pytest.mark.parametrize(
    ("name", "kind"), [("image_group.json", "image"), ("post_images_only.json", "post")]
)
def test_image_only_has_no_text(name: str, kind: str) -> None:
    message = parse(name)
    assert message.text == ""
    assert message.raw["message_type"] == kind


def test_quoted_message_text_from_the_lookup() -> None:
    event = load_event("text_group_reply.json")
    known = {"om_earlier_question": "How do I install mmdet?"}
    message = parse_message_event(event, BOT, known.get)
    assert isinstance(message, Message)
    assert message.raw["parent_id"] == "om_earlier_question"
    assert message.raw["quoted_text"] == "How do I install mmdet?"


def test_bots_and_broken_events_are_skipped() -> None:
    assert isinstance(parse_message_event(load_event("text_from_bot.json"), BOT), Skipped)
    assert isinstance(parse_message_event({"schema": "2.0"}, BOT), Skipped)
    broken = load_event("text_group.json")
    broken["event"]["message"]["content"] = "{not json"
    message = parse_message_event(broken, BOT)
    assert isinstance(message, Message) and message.text == ""


def test_post_content_in_chinese_labels_the_references() -> None:
    reply = Reply(
        text="请使用 mim 安装。", references=(Reference("docs/zh_cn/install.md", "安装"),)
    )
    [part] = plan_parts(reply, 3500)
    content = post_content(part)["zh_cn"]["content"]
    assert content[1] == [{"tag": "text", "text": "参考资料:"}]
    assert content[2] == [{"tag": "text", "text": "[1] docs/zh_cn/install.md § 安装"}]
    json.dumps(content)  # serialisable as sent


def test_references_split_apart_keep_their_numbers() -> None:
    refs = tuple(Reference(f"docs/{i}.md") for i in range(1, 5))
    first, second = split_part(Part("", refs))
    assert [n for n, _ in first.numbered()] == [1, 2]
    assert [n for n, _ in second.numbered()] == [3, 4]
    lines = [p[0]["text"] for p in post_content(second)["zh_cn"]["content"][1:]]
    assert lines == ["[3] docs/3.md", "[4] docs/4.md"]
