"""When the bot is unsure, it hands the question to the on-call people instead of answering."""

from __future__ import annotations

import pytest

from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

PIPELINE = ["normalize", "gate", "tests.plugins:Confidence", "tests.plugins:Stop", "generate"]
GATE = {"hold": {"seconds": 0}, "budget": {"min_gap_seconds": 0},
        "tag": {"on_call": ["ou_oncall"], "margin": 0.1}}  # fmt: skip


async def test_an_unsure_answer_becomes_a_tag_for_the_on_call(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=GATE, pipeline=PIPELINE)
    unsure = await chat.say("Does mmfoo run on a Raspberry Pi? (p=0.55)")
    assert (unsure["status"], unsure["decision"]) == ("answered", "tagged: low-confidence")
    reply = unsure["reply"]
    assert (reply["kind"], reply["mentions"]) == ("tag", ["ou_oncall"])
    assert "Raspberry Pi" in reply["text"] and "alice" in reply["text"]
    gate = next(s for s in unsure["trace"] if s["name"] == "gate")
    assert (gate["detail"]["tagged"], gate["detail"]["instead_of"]) == (
        "low-confidence",
        "answered",
    )

    sure = await chat.say("How do I install mmfoo? (p=0.9)", sender="bob")
    assert (sure["decision"], sure["reply"]["kind"]) == ("answered", "answer")


async def test_a_real_question_without_an_answer_is_tagged(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=GATE, pipeline=PIPELINE)
    nothing = await chat.say("How do I calibrate the foo sensor? (nothing) (p=0.9)")
    assert nothing["decision"] == "tagged: no-answer"
    chitchat = await chat.say("lol (nothing) (p=0.1)", sender="bob")
    assert chitchat["decision"] == "ignored: off-topic"  # not a question: no tag


async def test_without_an_on_call_list_nobody_is_tagged(group_chat: MakeChat) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 0}}, pipeline=PIPELINE)
    view = await chat.say("How do I calibrate the foo sensor? (nothing) (p=0.9)")
    assert view["decision"] == "ignored: no-knowledge"
