"""Admin commands: obeyed from the configured admins only; anyone else's are ignored without
a word and never answered as questions."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy import select

from bot.adapter import Adapter
from bot.storage.models import Feedback
from tests.fakes import ScriptedChatModel
from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

GATE = {"admins": ["root"], "hold": {"seconds": 0}, "budget": {"min_gap_seconds": 0}}


async def test_commands_from_anyone_else_are_ignored_silently(group_chat: MakeChat) -> None:
    llm = ScriptedChatModel("an answer")
    chat = await group_chat(gate=GATE, model=llm)
    for text in ["/hxd pause", "/hxd status", "/hxd bad how do I install mmfoo?", "/hxd"]:
        view = await chat.say(text, sender="mallory", mentioned_bot=True)
        assert (view["status"], view["decision"], view["reply"]) == (
            "ignored",
            "ignored: command",
            None,
        )
    assert llm.calls == []
    assert (await chat.say("How do I install mmfoo?"))["status"] == "answered"  # not paused


async def test_pause_resume_and_status(group_chat: MakeChat) -> None:
    chat = await group_chat(gate={**GATE, "working_hours": ["09:00-18:00"]})
    paused = await chat.say("@HuixiangDou /hxd pause", sender="root", mentioned_bot=True)
    assert (paused["status"], paused["decision"]) == ("answered", "command: pause")
    assert paused["reply"]["kind"] == "command"
    silent = await chat.say("How do I install mmfoo?", mentioned_bot=True)
    assert silent["decision"] == "ignored: paused"

    status = (await chat.say("/hxd status", sender="root"))["reply"]["text"]
    assert "paused since 2026-12-02 10:00 by root" in status
    assert "Replies in the last hour: 0/20" in status
    assert "09:00-18:00 Asia/Shanghai; now Wed 10:00: working" in status

    await chat.say("/hxd resume", sender="root")
    assert (await chat.say("How do I install mmfoo?"))["status"] == "answered"
    status = (await chat.say("/hxd status", sender="root"))["reply"]["text"]
    assert "active" in status and "Replies in the last hour: 1/20" in status  # commands uncounted


async def test_why_explains_the_last_decision(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=GATE)
    await chat.say("lol (p=0.1)", sender="bob")
    why = (await chat.say("/hxd why", sender="root"))["reply"]["text"]
    assert why.splitlines()[0].endswith("-> ignored: off-topic")
    assert "confidence: ignored: off-topic (0.100 vs 0.500)" in why
    assert "gate: pass" in why


async def test_good_bad_and_forget_are_stored_as_admin_feedback(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=GATE)
    good = await chat.say("/hxd good How do I export to ONNX?", sender="root")
    assert "should answer" in good["reply"]["text"]
    asked = await chat.say("哈哈 周末去哪玩 (p=0.9)", sender="bob")
    bad = await chat.say("/hxd bad", sender="root", reply_to=asked["reply"]["platform_reply_id"])
    assert "stay silent" in bad["reply"]["text"]
    usage = await chat.say("/hxd bad", sender="root")
    assert usage["reply"]["text"].startswith("Usage:")

    answered = await chat.say("Where is the config reference?", sender="carol")
    forgot = await chat.say("/hxd forget", sender="root")
    assert "Deleted my answer" in forgot["reply"]["text"]
    assert (await chat.view(answered["id"]))["reply"]["deleted"] is True
    again = await chat.say("/hxd forget", sender="root")
    assert "Deleted my answer" in again["reply"]["text"]  # the one before it
    assert (await chat.view(asked["id"]))["reply"]["deleted"] is True

    def rows(session: object) -> list[tuple[int, str, str]]:
        found = session.scalars(select(Feedback).order_by(Feedback.id))  # type: ignore[attr-defined]
        return [(f.rating, f.source, f.example) for f in found]

    assert await chat.bot.db.run(rows) == [
        (1, "admin", "How do I export to ONNX?"),
        (-1, "admin", "哈哈 周末去哪玩 (p=0.9)"),
        (-1, "admin", "Where is the config reference?"),
        (-1, "admin", "哈哈 周末去哪玩 (p=0.9)"),
    ]


async def test_outside_working_hours_and_on_quiet_days(group_chat: MakeChat) -> None:
    chat = await group_chat(
        gate={**GATE, "working_hours": ["09:00-12:00", "13:30-18:00"], "quiet_days": ["sat"]}
    )
    chat.clock.advance(hours=2, minutes=30)  # Wednesday 12:30 in Shanghai: lunch
    lunch = await chat.say("How do I install mmfoo?")
    assert lunch["decision"] == "ignored: off-hours"
    assert (await chat.say("How do I install mmfoo?", mentioned_bot=True))["status"] == "answered"
    chat.clock.advance(hours=1, minutes=30)  # 14:00, a weekday: working
    assert (await chat.say("Where are checkpoints saved?"))["status"] == "answered"
    chat.clock.advance(days=3)  # Saturday 14:00
    assert (await chat.say("Which CUDA do I need?"))["decision"] == "ignored: quiet-day"


async def test_forget_on_a_platform_that_cannot_delete_says_so(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=GATE)
    adapter = chat.bot.adapters["playground"]
    # An adapter that keeps the contract's default: deleting is not supported.
    adapter.delete = partial(Adapter.delete, adapter)  # type: ignore[method-assign]
    answered = await chat.say("Where is the config reference?")
    forgot = await chat.say("/hxd forget", sender="root")
    assert (
        forgot["reply"]["text"]
        == "I cannot delete messages here (playground cannot delete messages)."
    )
    assert (await chat.view(answered["id"]))["reply"]["deleted"] is False
