"""A question asked again soon after the bot answered it gets a pointer, not a new answer."""

from __future__ import annotations

import pytest

from tests.fakes import ScriptedChatModel
from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

ANSWER = "Install it with pip install mmfoo, then run mmfoo check to verify."


async def test_a_repeated_question_gets_a_pointer_to_the_earlier_answer(
    group_chat: MakeChat,
) -> None:
    llm = ScriptedChatModel(ANSWER)
    chat = await group_chat(gate={"hold": {"seconds": 0}}, model=llm)
    first = await chat.say("How do I install mmfoo?", sender="alice")
    assert first["reply"]["kind"] == "answer"
    chat.clock.advance(minutes=25)
    again = await chat.say("how do i install MMFoo", sender="bob")

    assert (again["status"], again["decision"]) == ("answered", "answered: duplicate")
    assert again["reply"]["kind"] == "pointer"
    text = again["reply"]["text"]
    assert "25 min ago" in text and "alice" in text and "pip install mmfoo" in text
    gate = next(s for s in again["trace"] if s["name"] == "gate")
    assert gate["verdict"] == "duplicate"
    assert gate["detail"]["duplicate_of"] == first["id"]
    assert gate["score"] >= gate["threshold"]
    assert len(llm.calls) == 1  # no second answer generated


async def test_chinese_pointer_and_a_different_question_is_answered(group_chat: MakeChat) -> None:
    llm = ScriptedChatModel("用 pip install mmfoo 安装即可。")
    chat = await group_chat(gate={"hold": {"seconds": 0}}, model=llm)
    await chat.say("怎么安装 mmfoo？")
    again = await chat.say("mmfoo 怎么安装", sender="bob")
    assert again["reply"]["kind"] == "pointer"
    assert "分钟前" in again["reply"]["text"]
    other = await chat.say("怎么导出 ONNX 模型？", sender="carol")
    assert other["reply"]["kind"] == "answer"


async def test_outside_the_window_it_is_answered_again(group_chat: MakeChat) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 0}, "duplicates": {"window_minutes": 30}})
    await chat.say("How do I install mmfoo?")
    chat.clock.advance(minutes=31)
    again = await chat.say("How do I install mmfoo?", sender="bob")
    assert again["reply"]["kind"] == "answer"
