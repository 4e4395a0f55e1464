"""reject.llm: the score reader and the middleware, with scripted models (malformed ones too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config
from bot.context import TurnContext
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel, make_context

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("7", "answered"),
        ("Score: 8", "answered"),
        ("8/10", "answered"),
        ("８分", "answered"),
        ("3", "ignored: chitchat"),
        ("评分：2", "ignored: chitchat"),
        # Malformed: no clear score, so "unsure" (rejected under on_unreadable: reject).
        ("", "ignored: unsure"),
        ("yes", "ignored: unsure"),
        ("This is a real question.", "ignored: unsure"),
        ("12", "ignored: unsure"),
        ("between 3 and 7", "ignored: unsure"),
    ],
)
async def test_scores_are_read_robustly_from_scripted_answers(
    config_factory: Callable[..., Config], answer: str, verdict: str
) -> None:
    config = config_factory(
        {
            "pipeline": ["reject.llm", "generate"],
            "middleware": {"reject.llm": {"on_unreadable": "reject"}},
        }
    )
    ctx = await run(config, ScriptedChatModel([answer, "an answer"]), "how do I install mmcv?")
    assert ctx.decision == verdict


async def run(config: Config, llm: ScriptedChatModel, text: str) -> TurnContext:
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    await pipeline.warm_up()
    ctx = make_context(config, text)
    await pipeline.run(ctx)
    return ctx


def step(ctx: TurnContext) -> dict[str, Any]:
    return next(s.to_dict() for s in ctx.trace if s.name == "reject.llm")


async def test_low_question_score_is_chitchat_and_traced(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["reject.llm", "generate"]})
    llm = ScriptedChatModel(["2", "never asked"])
    ctx = await run(config, llm, "哈哈哈 今天吃啥")
    assert ctx.decision == "ignored: chitchat"
    s = step(ctx)
    assert (s["score"], s["threshold"]) == (2.0, 5.0)
    assert s["detail"]["question"]["answer"] == "2"
    assert len(llm.calls) == 1
    assert "哈哈哈 今天吃啥" in llm.calls[0][0]["content"]


async def test_real_question_on_topic_is_answered(config_factory: Callable[..., Config]) -> None:
    config = config_factory(
        {
            "pipeline": ["reject.llm", "generate"],
            "groups": {"group-1": {"topic": "mmdetection"}},
        }
    )
    llm = ScriptedChatModel(["Score: 9", "8/10", "Use pip install mmdet."])
    ctx = await run(config, llm, "How do I install mmdet?")
    assert ctx.decision == "answered"
    assert ctx.answer == "Use pip install mmdet."
    s = step(ctx)
    assert s["detail"]["topic_score"]["score"] == 8.0 and s["detail"]["topic"] == "mmdetection"
    assert "mmdetection" in llm.calls[1][0]["content"]


async def test_off_topic_question_is_ignored(config_factory: Callable[..., Config]) -> None:
    config = config_factory(
        {"pipeline": ["reject.llm", "generate"], "groups": {"group-1": {"topic": "mmdetection"}}}
    )
    ctx = await run(config, ScriptedChatModel(["9", "1"]), "What is the best pizza in Rome?")
    assert ctx.decision == "ignored: off-topic"
    assert step(ctx)["score"] == 1.0


async def test_unreadable_answers_follow_on_unreadable(
    config_factory: Callable[..., Config],
) -> None:
    lenient = config_factory({"pipeline": ["reject.llm", "generate"]})
    ctx = await run(lenient, ScriptedChatModel(["Sure! Happy to help.", "answer"]), "how?")
    assert ctx.decision == "answered"
    assert step(ctx)["detail"]["question"]["score"] is None

    strict = config_factory(
        {
            "pipeline": ["reject.llm", "generate"],
            "middleware": {"reject.llm": {"on_unreadable": "reject"}},
        }
    )
    ctx = await run(strict, ScriptedChatModel(["between 3 and 7"]), "how?")
    assert ctx.decision == "ignored: unsure"
