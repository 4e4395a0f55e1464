"""Humans first: a reply in a group waits, and is withdrawn when a person answers meanwhile."""

from __future__ import annotations

import pytest

from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

QUESTION = "How do I install mmfoo on a GPU machine?"


def step(view: dict, name: str) -> dict:
    return next(s for s in view["trace"] if s["name"] == name)


async def test_a_human_reply_inside_the_wait_silences_the_bot(group_chat: MakeChat) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 180}})
    asked = await chat.say(QUESTION)
    assert asked["status"] == "replying"
    assert asked["reply"]["status"] == "held"
    gate = step(asked, "gate")
    assert gate["detail"]["hold_seconds"] == 180

    await chat.later(seconds=60)
    await chat.say("pip install mmfoo[gpu] worked for me", sender="bob",
                   reply_to=asked["platform_message_id"])  # fmt: skip
    assert await chat.later(seconds=121) == 1

    view = await chat.view(asked["id"])
    assert (view["status"], view["decision"]) == ("ignored", "ignored: answered-by-human")
    assert view["reply"]["status"] == "withdrawn"
    hold = step(view, "hold")
    assert hold["verdict"] == "ignored: answered-by-human"
    assert (hold["detail"]["by"], hold["detail"]["how"]) == ("bob", "reply")


async def test_a_human_answer_after_the_wait_is_too_late(group_chat: MakeChat) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 180}})
    asked = await chat.say(QUESTION)
    assert await chat.later(seconds=179) == 0  # not yet
    assert (await chat.view(asked["id"]))["status"] == "replying"
    assert await chat.later(seconds=1) == 1
    await chat.say("pip install mmfoo[gpu]", sender="bob", reply_to=asked["platform_message_id"])

    view = await chat.view(asked["id"])
    assert (view["status"], view["decision"]) == ("answered", "answered")
    assert view["reply"]["status"] == "sent"
    assert step(view, "hold")["verdict"] == "released"
    assert [s["name"] for s in view["trace"]][-2:] == ["hold", "send"]


async def test_a_plain_message_the_gate_judges_an_answer_silences_it(
    group_chat: MakeChat,
) -> None:
    chat = await group_chat()
    asked = await chat.say(QUESTION)
    await chat.say("lol monday again", sender="carol")  # not an answer
    await chat.say("same problem here, any idea?", sender="dave")  # a question, not an answer
    await chat.say("you need pip install mmfoo with the gpu extra", sender="bob")
    await chat.later(minutes=3)
    view = await chat.view(asked["id"])
    assert view["decision"] == "ignored: answered-by-human"
    hold = step(view, "hold")
    assert (hold["detail"]["by"], hold["detail"]["how"]) == ("bob", "judged")
    assert hold["detail"]["score"] >= hold["detail"]["threshold"]


async def test_chitchat_meanwhile_and_the_askers_own_words_do_not(group_chat: MakeChat) -> None:
    chat = await group_chat()
    asked = await chat.say(QUESTION)
    await chat.say("haha good morning all", sender="carol")
    await chat.say("same problem here with pip install mmfoo on the gpu machine", sender="dave")
    await chat.say("I tried pip install mmfoo on the gpu machine already", sender="alice")
    await chat.later(minutes=3)
    assert (await chat.view(asked["id"]))["decision"] == "answered"


async def test_mentions_are_answered_at_once_and_p2p_is_never_held(group_chat: MakeChat) -> None:
    chat = await group_chat()
    mentioned = await chat.say(QUESTION, mentioned_bot=True)
    assert mentioned["status"] == "answered"
    assert "hold_until" not in step(mentioned, "gate")["detail"]
    private = await chat.say(QUESTION, sender="erin", conversation_type="p2p",
                             conversation_id="dm-erin")  # fmt: skip
    assert private["status"] == "answered"


async def test_a_held_reply_survives_a_restart(group_chat: MakeChat) -> None:
    chat = await group_chat()
    asked = await chat.say(QUESTION)
    assert asked["reply"]["status"] == "held"
    await chat.restart()  # recovery finds the held reply and schedules it again
    assert (await chat.view(asked["id"]))["reply"]["status"] == "held"
    await chat.say("thanks, that's it: pip install mmfoo gpu", sender="bob",
                   reply_to=asked["platform_message_id"])  # fmt: skip
    await chat.later(minutes=3)
    view = await chat.view(asked["id"])
    assert view["decision"] == "ignored: answered-by-human"
    asked_model = [c for c in chat.llm.calls if c[-1]["content"].endswith(QUESTION)]
    assert len(asked_model) == 1  # decided once, before the restart


async def test_wait_returns_once_the_reply_is_held(group_chat: MakeChat) -> None:
    chat = await group_chat()
    posted = await chat.client.post(
        "/api/messages",
        json={"text": QUESTION, "sender": "alice", "conversation_id": chat.group, "wait": True},
    )
    assert posted.status_code == 200
    assert posted.json()["reply"]["status"] == "held"
