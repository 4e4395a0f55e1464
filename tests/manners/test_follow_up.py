"""Replies to the bot's answers: follow-ups answered with the exchange as context, and short
feedback ("thanks", "不对") stored instead of answered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.storage.models import Feedback
from tests.fakes import ScriptedChatModel
from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

ANSWER = "Run pip install mmfoo; on Linux the wheels include CUDA 12."


async def feedback_rows(chat: Any) -> list[tuple[str, int, str, str]]:
    def rows(session: Any) -> list[tuple[str, int, str, str]]:
        found = session.scalars(select(Feedback).order_by(Feedback.id))
        return [(f.user_id, f.rating, f.source, f.example) for f in found]

    return list(await chat.bot.db.run(rows))


async def test_a_reply_to_the_answer_is_a_follow_up_with_context(group_chat: MakeChat) -> None:
    llm = ScriptedChatModel([ANSWER, "On Windows use the prebuilt wheel from the index."])
    chat = await group_chat(model=llm)
    asked = await chat.say("How do I install mmfoo?")
    await chat.later(minutes=3)
    answer_id = (await chat.view(asked["id"]))["reply"]["platform_reply_id"]

    # Not @-mentioned and unsure-looking: answered anyway, at once, as a follow-up.
    follow = await chat.say("and on windows? (p=0.1)", reply_to=answer_id)
    assert follow["status"] == "answered"
    gate = next(s for s in follow["trace"] if s["name"] == "gate")
    assert gate["detail"]["follow_up"] == asked["id"]
    assert gate["detail"]["addressed"] is True and "hold_until" not in gate["detail"]
    prompt = llm.calls[1][-1]["content"]
    assert "How do I install mmfoo?" in prompt and ANSWER in prompt


async def test_the_askers_message_in_the_questions_thread_is_a_follow_up(
    group_chat: MakeChat,
) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 0}})
    asked = await chat.say("How do I install mmfoo?", message_id="q-1")
    follow = await chat.say("what about the CPU build? (p=0.1)", thread_root="q-1")
    assert follow["status"] == "answered"
    # Someone else in that thread is not following up on the bot.
    other = await chat.say("is the GPU build faster? (p=0.1)", sender="bob", thread_root="q-1")
    assert other["decision"] == "ignored: off-topic"
    assert asked["status"] == "answered"


async def test_thanks_and_wrong_are_stored_as_feedback_not_answered(group_chat: MakeChat) -> None:
    llm = ScriptedChatModel(ANSWER)
    chat = await group_chat(gate={"hold": {"seconds": 0}}, model=llm)
    asked = await chat.say("How do I install mmfoo?")
    answer_id = asked["reply"]["platform_reply_id"]
    thanks = await chat.say("thanks!", sender="bob", reply_to=answer_id)
    wrong = await chat.say("不对，这个不行", sender="carol", reply_to=answer_id)
    assert thanks["decision"] == wrong["decision"] == "ignored: feedback"
    assert thanks["reply"] is None and len(llm.calls) == 1
    assert (await chat.react(asked["id"], "dave", "up")).status_code == 200
    assert (await chat.react(999, "dave", "up")).status_code == 404
    assert await feedback_rows(chat) == [
        ("bob", 1, "reply", "How do I install mmfoo?"),
        ("carol", -1, "reply", "How do I install mmfoo?"),
        ("dave", 1, "reaction", "How do I install mmfoo?"),
    ]
