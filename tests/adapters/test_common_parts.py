"""Replies cut into the messages a platform takes: by characters or UTF-8 bytes, code blocks
whole, mentions first, references last and numbered across parts."""

from __future__ import annotations

import pytest

from adapters.common.parts import Part, plan_parts, render_markdown, split_part
from adapters.common.split import split_text, utf8_size
from bot.message import Reference, Reply

pytestmark = pytest.mark.unit


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


def test_split_part_halves_and_keeps_order() -> None:
    part = Part("one two three four five six", (Reference("a.md"),), ("ou_x",))
    first, second = split_part(part)
    assert first.text + " " + second.text == part.text
    assert first.mentions == ("ou_x",) and second.mentions == ()
    assert first.references == () and second.references == part.references
    assert split_part(Part("x")) == [Part("x")]


def test_utf8_splitting_never_cuts_a_character_and_keeps_code_blocks() -> None:
    code = "```python\n" + "\n".join(f"print('第{i}行')" for i in range(40)) + "\n```"
    text = "\n\n".join(["中文段落。" * 120, code, "混合 mixed 文本 " * 150])
    pieces = split_text(text, 2048, utf8_size)
    assert len(pieces) > 2
    assert all(utf8_size(p) <= 2048 for p in pieces)
    assert code in pieces
    joined = "".join(pieces).replace("\n", "").replace(" ", "")
    assert joined == text.replace("\n", "").replace(" ", "")


def test_a_long_chinese_line_is_cut_between_characters_by_bytes() -> None:
    text = "这是一个非常长的句子" * 200  # 6000 bytes, no break anywhere
    pieces = split_text(text, 1000, utf8_size)
    assert all(utf8_size(p) <= 1000 for p in pieces)
    assert "".join(pieces) == text


def test_markdown_parts_within_a_byte_limit_with_the_citations_last() -> None:
    reply = Reply(
        text="安装步骤如下。" * 300,
        references=(
            Reference("docs/zh_cn/install.md", "安装"),
            Reference("w", "Web", "https://x.y"),
        ),
    )
    parts = plan_parts(reply, 2048, utf8_size)
    rendered = [render_markdown(p) for p in parts]
    assert all(utf8_size(r) <= 2048 for r in rendered)
    assert "参考资料" in rendered[-1] and "[2] [Web](https://x.y)" in rendered[-1]
    assert all("参考资料" not in r for r in rendered[:-1])
