"""A gate that learns, with the real gate over the fixture knowledge base: feedback becomes
examples, the learning job re-fits and records the cross-validated F1, a worse fit is not used,
a group with enough examples gets a gate of its own; and the gate middleware's reply budget and
follow-ups as reject.embedding sees them."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.learning import learn
from bot.config import load_config
from knowledge.rejection.learned import read_learned
from tests.fakes import ScriptedChatModel
from tests.gate.conftest import write_gate_config
from tests.manners.conftest import Clock, GroupChat, start_bot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = ["normalize", "gate", "reject.embedding", "generate"]
GATE = {"admins": ["root"], "hold": {"seconds": 0}, "budget": {"min_gap_seconds": 0}}


@pytest.fixture(scope="module")
def calibrated(indexed: Path) -> Path:
    """The fixture bot with its global gate fitted once (each test works on a copy)."""
    config = load_config(indexed)
    from knowledge.knowledge_base import KnowledgeBase
    from knowledge.rejection.gates import RejectionGates

    kb = KnowledgeBase.open(config.knowledge, config.work_dir)
    try:
        RejectionGates(kb, config.rejection, config.work_dir).load()
    finally:
        kb.close()
    return indexed


@pytest.fixture
async def chat_factory(calibrated: Path, tmp_path: Path) -> AsyncIterator[Any]:
    chats: list[GroupChat] = []

    async def make(gate: dict[str, Any] | None = None, **overrides: Any) -> GroupChat:
        root = tmp_path / f"bot{len(chats)}"
        shutil.copytree(calibrated.parent, root)
        path = write_gate_config(
            root,
            pipeline=PIPELINE,
            middleware={"gate": {**GATE, **(gate or {})}},
            **overrides,
        )
        config = load_config(path)
        clock, model = Clock(), ScriptedChatModel("Run pip install mmfoo.")
        bot, client = await start_bot(config, clock, model)
        chat = GroupChat(config, bot, client, clock, model)
        chats.append(chat)
        return chat

    yield make
    for chat in chats:
        await chat.client.aclose()
        await chat.bot.stop()
        chat.bot.db.dispose()


def lesson(chat: GroupChat) -> Any:
    """What the daemon's learning job does, run now on the bot's clock."""
    gates = chat.bot.services.gates
    assert gates is not None
    return learn(chat.bot.db, gates, chat.config.rejection.learn_votes, chat.clock)


def history(chat: GroupChat, group: str = "") -> list[dict[str, Any]]:
    gates = chat.bot.services.gates
    assert gates is not None
    gate = gates.for_group(group)
    return gate.calibrator.history()


async def test_feedback_becomes_examples_and_the_refit_is_recorded(chat_factory: Any) -> None:
    chat = await chat_factory()
    gates = chat.bot.services.gates
    before = gates.global_gate.stored.meta
    asked = await chat.say("How do I export a trained mmfoo model to TensorRT?")
    assert asked["status"] == "answered"
    for member in ("bob", "carol"):  # two members agree: confirmed
        assert (await chat.react(asked["id"], member, "up")).status_code == 200
    lone = await chat.say("Which GPUs does mmfoo support for training?", sender="dave")
    await chat.react(lone["id"], "erin", "down")  # one member alone: not confirmed
    await chat.say("/hxd bad 周五晚上谁一起去唱K", sender="root")
    await chat.say("/hxd good mmfoo 的配置文件怎么继承？", sender="root")

    learned = lesson(chat)
    assert learned.changed
    group = learned.learned["oc_group"]
    assert group.good == [
        "How do I export a trained mmfoo model to TensorRT?",
        "mmfoo 的配置文件怎么继承？",
    ]
    assert group.bad == ["周五晚上谁一起去唱K"]
    assert read_learned(chat.config.work_dir)["oc_group"].good == group.good
    refit = learned.refits[""]
    assert refit.reason.startswith("examples changed")
    assert refit.f1_before == pytest.approx(before["cv"]["f1"], abs=1e-4)
    assert refit.f1_in_use is not None and refit.f1_after is not None
    assert refit.kept_new == (refit.f1_after >= refit.f1_in_use)
    assert history(chat)[-1] == refit.to_dict()
    stored = gates.global_gate.stored.meta
    if refit.kept_new:
        assert (stored["good"], stored["bad"]) == (before["good"] + 2, before["bad"] + 1)
    assert lesson(chat).refits == {}  # nothing new: nothing refitted


async def test_a_worse_refit_never_replaces_the_gate_in_use(chat_factory: Any) -> None:
    chat = await chat_factory()
    gates = chat.bot.services.gates
    in_use = gates.global_gate.stored.meta["examples"]
    # Corrections that contradict the examples: three look-alikes of each of seven good
    # questions, called bad. The new fit learns the noise; the gate in use does better.
    good = json.loads((chat.config.rejection.good_questions or Path()).read_text("utf-8"))
    for text in good[:7]:
        for variant in (text.rstrip("?？") + " please?", "hi, " + text, text + " thanks"):
            await chat.say(f"/hxd bad {variant}", sender="root")

    refit = lesson(chat).refits[""]
    assert refit.kept_new is False
    assert refit.f1_after < (refit.f1_in_use or 0) - 0.05
    assert gates.global_gate.stored.meta["examples"] == in_use  # still the old gate
    assert history(chat)[-1]["kept_new"] is False
    assert lesson(chat).refits == {}  # the same losing fit is not tried again...
    await chat.restart()
    restarted = chat.bot.services.gates
    assert restarted.global_gate.stored.meta["examples"] == in_use  # ...nor after a restart
    assert restarted.refresh() == {}


async def test_a_group_with_enough_examples_gets_its_own_gate(chat_factory: Any) -> None:
    chat = await chat_factory(
        rejection={"group_min_examples": 10, "min_examples": 10, "folds": 3},
        groups={"oc_team": {"knowledge_collection": "default"}},
    )
    chat.group = "oc_team"
    for text in ["怎么训练 mmfoo 检测模型？", "How do I evaluate a checkpoint?",
                 "mmfoo 的数据集格式是什么？", "Where are the training logs written?",
                 "怎么修改学习率？", "Does mmfoo support multi-node training?"]:  # fmt: skip
        await chat.say(f"/hxd good {text}", sender="root")
    for text in ["今天食堂有红烧肉", "who wants bubble tea", "周末去爬山吗",
                 "happy friday everyone", "哈哈哈笑死我了", "see you tomorrow"]:  # fmt: skip
        await chat.say(f"/hxd bad {text}", sender="root")

    learned = lesson(chat)
    assert learned.refits["oc_team"].f1_before is None  # its first gate
    assert "" not in learned.refits  # its examples went to its own gate, not the global one
    gates = chat.bot.services.gates
    assert list(gates.own_gates()) == ["oc_team"]
    own = await chat.say("How do I evaluate a checkpoint on the test set?")
    step = next(s for s in own["trace"] if s["name"] == "reject.embedding")
    assert step["detail"]["own_gate"] is True
    chat.group = "oc_other"
    other = await chat.say("How do I evaluate a checkpoint on the test set?")
    step = next(s for s in other["trace"] if s["name"] == "reject.embedding")
    assert step["detail"]["own_gate"] is False
    chat.group = "oc_team"
    status = (await chat.say("/hxd status", sender="root"))["reply"]["text"]
    assert "Gate: its own (learned, 6 good + 6 bad examples" in status


async def test_the_budget_raises_the_calibrated_threshold(chat_factory: Any) -> None:
    chat = await chat_factory(
        gate={"budget": {"per_hour": 2, "rise_from": 0, "max_strictness": 0.8}}
    )
    first = await chat.say("How do I install MMFoo from source?")
    step = next(s for s in first["trace"] if s["name"] == "reject.embedding")
    calibrated = step["detail"]["calibrated_threshold"]
    assert (step["detail"]["strictness"], step["threshold"]) == (0.0, pytest.approx(calibrated))
    second = await chat.say("训练时报错 CUDA out of memory 怎么办？", sender="bob")
    step = next(s for s in second["trace"] if s["name"] == "reject.embedding")
    assert step["detail"]["strictness"] == 0.4
    assert step["threshold"] == pytest.approx(calibrated + (1 - calibrated) * 0.4, abs=1e-3)


async def test_a_follow_up_is_answered_without_asking_the_gate(chat_factory: Any) -> None:
    chat = await chat_factory()
    asked = await chat.say("How do I install MMFoo?")
    alone = await chat.say("and on windows?", sender="bob")
    assert alone["decision"] == "ignored: off-topic"  # on its own, the gate says no
    follow = await chat.say("and on windows?", reply_to=asked["reply"]["platform_reply_id"])
    assert follow["status"] == "answered"
    step = next(s for s in follow["trace"] if s["name"] == "reject.embedding")
    assert step["detail"] == {"follow_up": asked["id"]} and step["score"] is None
    assert "How do I install MMFoo?" in chat.llm.calls[-1][-1]["content"]
