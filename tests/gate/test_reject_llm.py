"""reject.llm: the score reader and the middleware, with scripted models (malformed ones too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Config
from bot.context import TurnContext
from bot.middlewares.reject_llm import parse_score
from bot.pipeline import build_pipelines
from bot.services import build_services
from tests.fakes import ScriptedChatModel, make_message

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("7", 7.0),
        (" 7.", 7.0),
        ("10", 10.0),
        ("0", 0.0),
        ("Score: 8", 8.0),
        ("8/10", 8.0),
        ("I'd rate it 6 out of 10.", 6.0),
        ("８分", 8.0),
        ("评分：3", 3.0),
        ("7.5", 7.5),
    ],
)
def test_score_reader_finds_the_one_score(answer: str, score: float) -> None:
    assert parse_score(answer) == score


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        "yes",
        "This is a real question.",
        "12",
        "between 3 and 7",
        "-3",
        "1e9",
        "３.５.６",
    ],
)
def test_score_reader_refuses_malformed_answers(answer: str) -> None:
    assert parse_score(answer) is None


def run_context(config: Config, text: str) -> TurnContext:
    message = make_message(text=text)
    return TurnContext(
        message=message,
        message_id=1,
        config=config,
        group=config.group(message.conversation_id),
        question=text,
    )


async def run(config: Config, llm: ScriptedChatModel, text: str) -> TurnContext:
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    await pipeline.warm_up()
    ctx = run_context(config, text)
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
    assert s["detail"]["question_answer"] == "2"
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
    assert s["detail"]["topic_score"] == 8.0 and s["detail"]["topic"] == "mmdetection"
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
    assert step(ctx)["detail"]["question_score"] is None

    strict = config_factory(
        {
            "pipeline": ["reject.llm", "generate"],
            "middleware": {"reject.llm": {"on_unreadable": "reject"}},
        }
    )
    ctx = await run(strict, ScriptedChatModel(["between 3 and 7"]), "how?")
    assert ctx.decision == "ignored: unsure"
