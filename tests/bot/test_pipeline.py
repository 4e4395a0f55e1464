"""The middleware onion: order, short-circuit, trace contents, plugins by dotted path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config
from bot.context import TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext, build_pipelines
from tests.fakes import ScriptedChatModel, make_context

pytestmark = pytest.mark.unit


async def test_default_pipeline_answers_and_traces_each_step(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory()
    llm = ScriptedChatModel("Run pip install mmdet.")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    ctx = make_context(config, "@HuixiangDou  how do I install   mmdet?")

    reply = await pipeline.run(ctx)

    assert reply == Reply(text="Run pip install mmdet.")
    assert ctx.decision == "answered"
    assert [step.name for step in ctx.trace] == ["normalize", "generate"]
    assert [step.verdict for step in ctx.trace] == ["pass", "pass"]
    assert all(step.ms >= 0 for step in ctx.trace)
    assert ctx.trace[0].detail["language"] == "en"
    assert ctx.trace[1].detail["model"] == "scripted"
    # normalize stripped the mention and the extra spaces before the model saw the question
    assert "how do I install mmdet?" in llm.calls[0][-1]["content"]
    assert "@HuixiangDou" not in llm.calls[0][-1]["content"]


async def test_chinese_question_gets_the_chinese_prompt(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory()
    llm = ScriptedChatModel("用 pip install mmcv 安装。")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    ctx = make_context(config, "请问 mmcv 怎么安装？")
    await pipeline.run(ctx)
    assert ctx.language == "zh"
    assert "问题：请问 mmcv 怎么安装？" in llm.calls[0][-1]["content"]


async def test_short_circuit_stops_the_chain_and_records_why(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(
        {
            "pipeline": ["normalize", "tests.plugins:RequireKeyword", "generate"],
            "middleware": {"require_keyword": {"keyword": "?", "score": 0.7}},
        }
    )
    llm = ScriptedChatModel("should never be asked")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    ctx = make_context(config, "good morning everyone")

    reply = await pipeline.run(ctx)

    assert reply is None
    assert llm.calls == []
    assert ctx.decision == "ignored: chitchat"
    assert [step.name for step in ctx.trace] == ["normalize", "require_keyword"]
    step = ctx.trace[1]
    assert (step.verdict, step.score, step.threshold) == ("ignored: chitchat", 0.0, 0.7)


async def test_third_party_middleware_by_dotted_path_passes_with_scores(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(
        {"pipeline": ["normalize", "tests.plugins:RequireKeyword", "generate"]}
    )
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel("yes")))[""]
    ctx = make_context(config, "does it work?")
    reply = await pipeline.run(ctx)
    assert reply is not None and reply.text == "yes"
    assert pipeline.names == ["normalize", "require_keyword", "generate"]
    keyword = ctx.trace[1]
    assert (keyword.verdict, keyword.score, keyword.threshold) == ("pass", 1.0, 0.5)
    assert keyword.detail == {"keyword": "?"}


async def test_empty_message_is_ignored_as_empty(config_factory: Callable[..., Config]) -> None:
    config = config_factory()
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    ctx = make_context(config, "@bot ", message={"raw": {"message_type": "image"}})
    assert await pipeline.run(ctx) is None
    assert ctx.decision == "ignored: empty"
    assert ctx.trace[0].detail["kind"] == "image"


async def test_require_mention_group_setting(config_factory: Callable[..., Config]) -> None:
    config = config_factory({"groups": {"quiet-group": {"require_mention": True}}})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel("hi")))[""]
    unmentioned = make_context(
        config, "how do I train?", message={"conversation_id": "quiet-group"}
    )
    assert await pipeline.run(unmentioned) is None
    assert unmentioned.decision == "ignored: not-mentioned"
    mentioned = make_context(
        config,
        "how do I train?",
        message={"conversation_id": "quiet-group", "mentioned_bot": True},
    )
    assert await pipeline.run(mentioned) is not None


async def test_error_is_recorded_on_the_failing_step(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["normalize", "tests.plugins:Boom", "generate"]})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    ctx = make_context(config)
    with pytest.raises(ValueError, match="exploded"):
        await pipeline.run(ctx)
    assert ctx.trace[-1].name == "boom"
    assert ctx.trace[-1].verdict == "error: ValueError: middleware exploded"
    # The middleware around it only passed the error on: it is not marked as failing.
    assert [(s.name, s.verdict) for s in ctx.trace[:-1]] == [("normalize", "pass")]


async def test_a_failing_model_marks_generate_not_normalize(
    config_factory: Callable[..., Config],
) -> None:
    class Broken(ScriptedChatModel):
        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the model server is down")

    config = config_factory()
    pipeline = build_pipelines(build_services(config, llm=Broken()))[""]
    ctx = make_context(config)
    with pytest.raises(RuntimeError):
        await pipeline.run(ctx)
    verdicts = {step.name: step.verdict for step in ctx.trace}
    assert verdicts["normalize"] == "pass"
    assert verdicts["generate"].startswith("error: RuntimeError: the model server is down")


async def test_outer_step_time_excludes_inner_steps(config_factory: Callable[..., Config]) -> None:
    config = config_factory()
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel("ok", delay=0.2)))[""]
    ctx = make_context(config)
    await pipeline.run(ctx)
    normalize, generate = ctx.trace
    assert generate.ms >= 200
    assert normalize.ms < 100


async def test_per_group_pipeline_is_built_once_and_used(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(
        {
            "groups": {
                "g1": {"pipeline": ["normalize", "tests.plugins:RequireKeyword", "generate"]},
                "g2": {"pipeline": ["normalize", "tests.plugins:RequireKeyword", "generate"]},
            }
        }
    )
    pipelines = build_pipelines(build_services(config, llm=ScriptedChatModel()))
    assert pipelines["g1"] is pipelines["g2"]
    assert pipelines[""].names == ["normalize", "generate"]


async def test_middleware_written_without_the_base_class(
    config_factory: Callable[..., Config],
) -> None:
    """A plain class with ``name`` and ``__call__`` is enough; post-processing on the way out
    sees the reply the inner middlewares produced."""

    class Shout(BaseMiddleware[Any]):
        name = "shout"

        async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
            reply = await call_next(ctx)
            return None if reply is None else Reply(text=reply.text.upper())

    config = config_factory()
    services = build_services(config, llm=ScriptedChatModel("quiet words"))
    from bot.pipeline import Pipeline, load_middleware

    pipeline = Pipeline(
        [Shout(services, None), load_middleware("generate", services, "pipeline[1]")]
    )
    reply = await pipeline.run(make_context(config))
    assert reply == Reply(text="QUIET WORDS")


async def test_normalize_keeps_code_indentation(config_factory: Callable[..., Config]) -> None:
    config = config_factory()
    llm = ScriptedChatModel("fix the indent")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    question = "@bot why does this fail?\n\n\n\ndef f():\n    return  1\n"
    ctx = make_context(config, question)
    await pipeline.run(ctx)
    assert ctx.question == "why does this fail?\n\ndef f():\n    return 1"
