"""The reply budget: counted in the database, raising the answering threshold as it drains,
only @-mentions once spent, bot messages kept apart by a minimum gap."""

from __future__ import annotations

import pytest

from tests.manners.conftest import MakeChat

pytestmark = pytest.mark.unit

# Different questions (a repeated one would get a pointer to its answer).
QUESTIONS = [
    "How do I install mmfoo from source?",
    "Which CUDA version does the detector training need?",
    "Why does export to ONNX fail with an unsupported operator?",
    "Where are checkpoints written during training?",
    "Can I resume an interrupted run?",
    "Is TensorRT deployment supported?",
]
# No hold and no gap, so each answer is posted at once and counts at once.
BUDGET = {"hold": {"seconds": 0}, "budget": {"per_hour": 4, "min_gap_seconds": 0,
          "rise_from": 0.5, "max_strictness": 0.8}}  # fmt: skip


def steps(view: dict) -> dict[str, dict]:
    return {s["name"]: s for s in view["trace"]}


async def test_the_threshold_rises_as_the_budget_drains(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=BUDGET)
    seen = []
    for n in range(4):
        view = await chat.say(f"{QUESTIONS[n]} (p=0.95)")
        trace = steps(view)
        seen.append(
            (trace["gate"]["detail"]["budget_used"], trace["gate"]["detail"]["strictness"])
        )
        assert trace["confidence"]["threshold"] == pytest.approx(
            0.5 + 0.5 * trace["gate"]["detail"]["strictness"]
        )
        assert view["status"] == "answered"
    # 0 and 1 of 4 used: the calibrated threshold; 2 of 4: starts rising; 3 of 4: 0.4.
    assert seen == [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.4)]

    # The same confidence that passed with the whole budget left fails with little left.
    chat.group = "oc_fresh"
    assert (await chat.say("Is mmfoo 2 compatible with mmcv 1? (p=0.65)"))["status"] == "answered"
    chat.group = "oc_drained"
    for n in range(3):
        await chat.say(f"{QUESTIONS[n]} (p=0.95)")
    unsure = await chat.say("Is mmfoo 2 compatible with mmcv 1? (p=0.65)")
    gate = steps(unsure)["confidence"]
    assert (unsure["decision"], gate["threshold"]) == ("ignored: off-topic", pytest.approx(0.7))


async def test_spent_budget_leaves_only_mentions_and_survives_a_restart(
    group_chat: MakeChat,
) -> None:
    chat = await group_chat(gate=BUDGET)
    for n in range(4):
        assert (await chat.say(QUESTIONS[n]))["status"] == "answered"
    over = await chat.say(QUESTIONS[4])
    assert over["decision"] == "ignored: over-budget"
    assert steps(over)["gate"]["detail"]["budget_used"] == 4

    await chat.restart()  # counted in the database, not in memory
    assert (await chat.say(QUESTIONS[5]))["decision"] == "ignored: over-budget"
    mentioned = await chat.say("@HuixiangDou how do I install mmfoo?", mentioned_bot=True)
    assert mentioned["status"] == "answered"
    gate = steps(mentioned)["gate"]["detail"]
    assert (gate["budget_used"], gate["strictness"]) == (4, 0.0)  # not raised for a mention

    chat.clock.advance(minutes=61)  # the oldest answers leave the hour
    assert (await chat.say(QUESTIONS[4]))["status"] == "answered"


async def test_other_groups_have_their_own_budget(group_chat: MakeChat) -> None:
    chat = await group_chat(gate=BUDGET)
    for n in range(4):
        await chat.say(QUESTIONS[n])
    chat.group = "oc_other"
    assert (await chat.say(QUESTIONS[4]))["status"] == "answered"


async def test_a_reply_due_inside_the_minimum_gap_is_held_until_it_ends(
    group_chat: MakeChat,
) -> None:
    chat = await group_chat(gate={"hold": {"seconds": 0}, "budget": {"min_gap_seconds": 60}})
    first = await chat.say("How do I install mmfoo?")
    assert first["status"] == "answered"
    chat.clock.advance(seconds=20)
    second = await chat.say("How do I train a detector?", sender="bob")
    assert second["reply"]["status"] == "held"
    assert steps(second)["gate"]["detail"]["hold_seconds"] == 40
    assert await chat.later(seconds=39) == 0
    assert await chat.later(seconds=1) == 1
    assert (await chat.view(second["id"]))["status"] == "answered"


async def test_per_group_overrides_merge_over_the_global_settings(group_chat: MakeChat) -> None:
    chat = await group_chat(
        gate=BUDGET,
        groups={"oc_small": {"middleware": {"gate": {"budget": {"per_hour": 1}}}}},
    )
    chat.group = "oc_small"
    assert (await chat.say(QUESTIONS[0]))["status"] == "answered"
    over = await chat.say(QUESTIONS[1])
    assert over["decision"] == "ignored: over-budget"
    detail = steps(over)["gate"]["detail"]
    assert detail["budget_per_hour"] == 1
    assert "hold_until" not in detail  # hold.seconds 0 still comes from the global settings
