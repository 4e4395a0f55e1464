"""The retrieve middleware in the real pipeline: normalize -> retrieve -> generate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config, ConfigError
from bot.context import TurnContext
from bot.pipeline import Pipeline, build_pipelines
from bot.services import Services
from tests.fakes import ScriptedChatModel, make_message

pytestmark = pytest.mark.integration

PIPELINE = ["normalize", "retrieve", "generate"]


async def start(
    config_factory: Callable[..., Config], corpus: Path, build: bool = True, **extra: Any
) -> tuple[Services, Pipeline, ScriptedChatModel]:
    config = config_factory(
        {
            "pipeline": PIPELINE,
            "knowledge": {"sources": [{"path": str(corpus)}]},
            **extra,
        }
    )
    llm = ScriptedChatModel("Use pip install mmfoo [1].")
    services = build_services(config, llm=llm)
    assert services.knowledge is not None
    if build:
        services.knowledge.build(progress=False)
    await services.warm_up()
    pipeline = build_pipelines(services)[""]
    await pipeline.warm_up()
    return services, pipeline, llm


def context(config: Config, text: str, conversation_id: str = "group-1") -> TurnContext:
    message = make_message(text=text, conversation_id=conversation_id)
    return TurnContext(
        message=message,
        message_id=1,
        config=config,
        group=config.group(conversation_id),
        question=text,
    )


async def test_passages_reach_the_prompt_and_the_trace(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    services, pipeline, llm = await start(config_factory, corpus)
    ctx = context(services.config, "@HuixiangDou how do I install mmfoo with pip?")
    reply = await pipeline.run(ctx)

    assert reply is not None and ctx.decision == "answered"
    assert ctx.chunks[0].source == "corpus/en/install.md"
    assert len(ctx.chunks) == 5
    prompt = llm.calls[0][-1]["content"]
    assert "corpus/en/install.md § Installation" in prompt
    assert "pip install mmfoo" in prompt
    step = ctx.trace[1]
    assert step.name == "retrieve" and step.verdict == "pass"
    assert step.threshold == 0.15 and step.score is not None and step.score >= 0.15
    assert step.detail["best"] == ctx.chunks[0].score
    assert step.detail["hits"][0]["source"] == "corpus/en/install.md"
    assert set(step.detail["hits"][0]["scores"]) == {"dense", "bm25", "weighted", "ranker"}
    assert len(step.detail["hits"][0]["features"]) == 3
    await services.close()


async def test_nothing_relevant_stops_with_no_knowledge(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    services, pipeline, llm = await start(
        config_factory, corpus, middleware={"retrieve": {"min_score": 0.6}}
    )
    ctx = context(services.config, "what should we eat tonight, hotpot or noodles?")
    assert await pipeline.run(ctx) is None
    assert ctx.decision == "ignored: no-knowledge"
    assert ctx.trace[1].verdict == "ignored: no-knowledge"
    assert ctx.trace[1].score is not None and ctx.trace[1].score < 0.6
    assert ctx.trace[1].threshold == 0.6
    assert llm.calls == []
    await services.close()


async def test_an_empty_knowledge_base_answers_nothing(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    services, pipeline, _ = await start(config_factory, corpus, build=False)
    ctx = context(services.config, "how do I install mmfoo?")
    assert await pipeline.run(ctx) is None
    assert ctx.decision == "ignored: no-knowledge"
    assert ctx.trace[1].detail["why"] == "the knowledge base has no passages"
    await services.close()


async def test_a_group_searches_its_own_collection(
    config_factory: Callable[..., Config], corpus: Path
) -> None:
    config = config_factory(
        {
            "pipeline": PIPELINE,
            "knowledge": {
                "sources": [
                    {"path": str(corpus / "en"), "collection": "english"},
                    {"path": str(corpus / "zh"), "collection": "chinese"},
                ]
            },
            "groups": {"zh-group": {"knowledge_collection": "chinese"}},
        }
    )
    services = build_services(config, llm=ScriptedChatModel("好的"))
    assert services.knowledge is not None
    services.knowledge.build(progress=False)
    await services.warm_up()
    pipeline = build_pipelines(services)[""]
    ctx = context(config, "how do I install with pip?", conversation_id="zh-group")
    await pipeline.run(ctx)
    assert ctx.trace[1].detail["collection"] == "chinese"
    assert {c.source.split("/")[0] for c in ctx.chunks} <= {"zh"}
    await services.close()


async def test_retrieve_without_sources_is_a_config_error(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": PIPELINE})
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    with pytest.raises(ConfigError, match="retrieve middleware needs a knowledge base"):
        await pipeline.warm_up()
