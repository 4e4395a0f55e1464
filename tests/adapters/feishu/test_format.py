"""The pure parts: recorded callbacks to Messages, replies to `post` parts."""

from __future__ import annotations

import json

import pytest

from adapters.feishu_format import (
    Part,
    Skipped,
    flatten_post,
    parse_message_event,
    plan_parts,
    post_content,
    split_part,
    split_text,
)
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


def test_split_text_respects_the_limit_and_keeps_code_whole() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    text = "\n\n".join(["a" * 300, code, "b " * 400, "c" * 1200])
    pieces = split_text(text, 500)
    assert all(len(p) <= 500 for p in pieces)
    assert code in pieces
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )


def test_plan_parts_puts_mentions_first_and_references_last() -> None:
    reply = Reply(
        text="\n\n".join(["p" * 900, "q" * 900]),
        references=(Reference("docs/a.md", "Intro"), Reference("u", "U", "https://u.example")),
        mentions=("ou_asker",),
    )
    parts = plan_parts(reply, 1000)
    assert [len(p.text) for p in parts] == [900, 900]
    assert parts[0].mentions == ("ou_asker",) and parts[1].mentions == ()
    assert parts[0].references == () and parts[1].references == reply.references
    assert all(p.size() <= 1000 for p in parts)


def test_references_get_a_part_of_their_own_when_needed() -> None:
    reply = Reply(text="x" * 990, references=(Reference("docs/a-long-path.md", "Heading"),))
    parts = plan_parts(reply, 1000)
    assert [p.text for p in parts] == ["x" * 990, ""]
    assert parts[1].references == reply.references


def test_post_content_in_chinese_labels_the_references() -> None:
    reply = Reply(
        text="请使用 mim 安装。", references=(Reference("docs/zh_cn/install.md", "安装"),)
    )
    [part] = plan_parts(reply, 3500)
    content = post_content(part)["zh_cn"]["content"]
    assert content[1] == [{"tag": "text", "text": "参考资料:"}]
    assert content[2] == [{"tag": "text", "text": "[1] docs/zh_cn/install.md § 安装"}]
    json.dumps(content)  # serialisable as sent


def test_split_part_halves_and_keeps_order() -> None:
    part = Part("one two three four five six", (Reference("a.md"),), ("ou_x",))
    first, second = split_part(part)
    assert first.text + " " + second.text == part.text
    assert first.mentions == ("ou_x",) and second.mentions == ()
    assert first.references == () and second.references == part.references
    assert split_part(Part("x")) == [Part("x")]


def test_references_split_apart_keep_their_numbers() -> None:
    refs = tuple(Reference(f"docs/{i}.md") for i in range(1, 5))
    first, second = split_part(Part("", refs))
    assert [n for n, _ in first.numbered()] == [1, 2]
    assert [n for n, _ in second.numbered()] == [3, 4]
    lines = [p[0]["text"] for p in post_content(second)["zh_cn"]["content"][1:]]
    assert lines == ["[3] docs/3.md", "[4] docs/4.md"]
