"""The verify middleware: each check scores the answer; the first below its threshold silences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config
from bot.context import Chunk
from bot.llm.protocol import ChatMessage
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel, make_context

pytestmark = pytest.mark.unit

CHUNKS = [Chunk(text="Install with pip install mmdet.", source="docs/install.md", score=0.9)]


def judge(
    scores: dict[str, str], answer: str = "Run pip install mmdet [1]."
) -> Callable[..., str]:
    """Answers the generate prompt, then each verify prompt by what it asks about."""

    def reply(messages: list[ChatMessage]) -> str:
        prompt = messages[-1]["content"]
        if "every factual claim" in prompt or "每一个事实陈述" in prompt:
            return scores["grounded"]
        if "address what was asked" in prompt or "回答了所问的问题" in prompt:
            return scores["relevant"]
        if "safe to post" in prompt or "适合发出" in prompt:
            return scores["safe"]
        return answer

    return reply


def pipeline_for(config_factory: Callable[..., Config], llm: Any, **options: Any) -> Any:
    config = config_factory(
        {"pipeline": ["generate", "verify"], "middleware": {"verify": options} if options else {}}
    )
    return config, build_pipelines(build_services(config, llm=llm))[""]


async def test_a_good_answer_passes_every_check(config_factory: Callable[..., Config]) -> None:
    llm = ScriptedChatModel(judge({"grounded": "9", "relevant": "7", "safe": "10"}))
    config, pipeline = pipeline_for(config_factory, llm)
    ctx = make_context(config, chunks=list(CHUNKS))
    reply = await pipeline.run(ctx)
    assert reply is not None and ctx.decision == "answered"
    step = ctx.trace[1]
    assert step.verdict == "pass"
    assert step.detail["checks"]["grounded"]["score"] == 9
    assert (step.score, step.threshold) == (7.0, 5.0)  # the closest call: relevant
    assert len(llm.calls) == 4


async def test_an_ungrounded_answer_is_silenced_and_the_trace_says_why(
    config_factory: Callable[..., Config],
) -> None:
    llm = ScriptedChatModel(judge({"grounded": "Score: 2/10", "relevant": "9", "safe": "10"}))
    config, pipeline = pipeline_for(config_factory, llm)
    ctx = make_context(config, chunks=list(CHUNKS))
    assert await pipeline.run(ctx) is None
    step = ctx.trace[1]
    assert ctx.decision == "ignored: unsure" and step.verdict == "ignored: unsure"
    assert (step.score, step.threshold) == (2.0, 6.0)
    assert step.detail["failed"] == "grounded"
    assert step.detail["why"] == "the answer is not supported by the reference material"
    assert len(llm.calls) == 2  # stopped at the first failed check


async def test_unsafe_answers_are_silenced_in_chinese_too(
    config_factory: Callable[..., Config],
) -> None:
    llm = ScriptedChatModel(
        judge({"grounded": "9", "relevant": "9", "safe": "1分"}, answer="密码是 hunter2")
    )
    config, pipeline = pipeline_for(config_factory, llm)
    ctx = make_context(config, "服务器密码是什么？", language="zh", chunks=list(CHUNKS))
    assert await pipeline.run(ctx) is None
    assert ctx.trace[1].detail["failed"] == "safe"
    assert "工作群" in llm.calls[-1][-1]["content"]


async def test_unreadable_scores_silence_by_default_or_pass_when_configured(
    config_factory: Callable[..., Config],
) -> None:
    scores = {"grounded": "It looks fine to me", "relevant": "9", "safe": "9"}
    config, pipeline = pipeline_for(config_factory, ScriptedChatModel(judge(scores)))
    ctx = make_context(config, chunks=list(CHUNKS))
    assert await pipeline.run(ctx) is None
    assert ctx.trace[1].detail["why"] == "grounded: no readable score"
    assert ctx.trace[1].detail["checks"]["grounded"]["method"] == "unreadable"

    config, pipeline = pipeline_for(
        config_factory, ScriptedChatModel(judge(scores)), on_unreadable="post"
    )
    assert await pipeline.run(make_context(config, chunks=list(CHUNKS))) is not None


async def test_grounding_is_skipped_without_reference_material(
    config_factory: Callable[..., Config],
) -> None:
    llm = ScriptedChatModel(judge({"grounded": "0", "relevant": "9", "safe": "9"}))
    config, pipeline = pipeline_for(config_factory, llm, checks=["grounded", "relevant"])
    ctx = make_context(config)
    assert await pipeline.run(ctx) is not None
    assert ctx.trace[1].detail["checks"]["grounded"] == "skipped: no reference material"
    assert len(llm.calls) == 2  # generate + relevant
