"""reject.embedding in the pipeline: decisions with their evidence in the trace, @-mentions, and
re-calibration when the examples change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import ConfigError, load_config
from bot.context import TurnContext
from bot.middlewares.reject_embedding import RejectEmbedding
from bot.pipeline import Pipeline, build_pipelines
from tests.fakes import ScriptedChatModel, make_context
from tests.gate.conftest import build_index, write_gate_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def pipeline_for(path: Path) -> tuple[Pipeline, Any]:
    config = load_config(path)
    services = build_services(config, llm=ScriptedChatModel("Run pip install mmfoo."))
    pipeline = build_pipelines(services)[""]
    await pipeline.warm_up()
    return pipeline, config


def gate_step(ctx: TurnContext) -> dict[str, Any]:
    return next(s.to_dict() for s in ctx.trace if s.name == "reject.embedding")


async def test_questions_pass_and_chitchat_is_ignored_with_the_evidence(indexed: Path) -> None:
    pipeline, config = await pipeline_for(indexed)
    ctx = make_context(config, "How can I install mmfoo from source?")
    await pipeline.run(ctx)
    assert ctx.decision == "answered"
    step = gate_step(ctx)
    assert step["verdict"] == "pass"
    assert step["score"] >= step["threshold"]
    features = step["detail"]["features"]
    assert {"kb_dense_max", "kb_bm25_max", "good_topk", "bad_topk", "question_mark"} <= set(
        features
    )
    assert step["detail"]["gate"] == "learned"

    ctx = make_context(config, "哈哈哈 周末一起去吃火锅吧")
    await pipeline.run(ctx)
    assert ctx.decision == "ignored: off-topic"
    step = gate_step(ctx)
    assert step["score"] < step["threshold"]
    assert features.keys() == step["detail"]["features"].keys()


async def test_the_trace_keeps_the_pushes_and_the_nearest_examples(indexed: Path) -> None:
    pipeline, config = await pipeline_for(indexed)
    chitchat = make_context(config, "哈哈哈 周末一起去吃火锅吧")
    question = make_context(config, "How can I install mmfoo from source?")
    await pipeline.run(chitchat)
    await pipeline.run(question)
    bad = json.loads((indexed.parent / "bad.json").read_text(encoding="utf-8"))
    good = json.loads((indexed.parent / "good.json").read_text(encoding="utf-8"))
    silent, passed = gate_step(chitchat)["detail"], gate_step(question)["detail"]
    assert silent["nearest_bad"][0]["text"] in bad
    assert silent["nearest_good"][0]["text"] in good
    assert silent["nearest_bad"][0]["similarity"] > silent["nearest_good"][0]["similarity"]
    assert passed["nearest_good"][0]["similarity"] > passed["nearest_bad"][0]["similarity"]
    assert set(silent["features"]) <= set(silent["contributions"])
    assert sum(silent["contributions"].values()) < sum(passed["contributions"].values())
    json.dumps(silent)  # the trace is stored as JSON


async def test_a_mention_is_a_feature_the_gate_sees(indexed: Path) -> None:
    pipeline, config = await pipeline_for(indexed)
    plain = make_context(config, "怎么导出 ONNX?")
    mentioned = make_context(config, "怎么导出 ONNX?", message={"mentioned_bot": True})
    await pipeline.run(plain)
    await pipeline.run(mentioned)
    assert gate_step(plain)["detail"]["features"]["mentioned"] == 0.0
    assert gate_step(mentioned)["detail"]["features"]["mentioned"] == 1.0
    # Same text, more willing to answer when the bot is asked directly.
    assert gate_step(mentioned)["score"] > gate_step(plain)["score"]


async def test_messages_arriving_together_are_scored_in_one_batch(indexed: Path) -> None:
    import asyncio

    pipeline, config = await pipeline_for(indexed)
    gate = next(m for m in pipeline.middlewares if isinstance(m, RejectEmbedding))
    batches: list[int] = []
    decide = gate.decide

    async def counting(chosen: Any, queries: list[str], mentioned: list[bool]) -> Any:
        batches.append(len(queries))
        return await decide(chosen, queries, mentioned)

    gate.decide = counting  # type: ignore[method-assign]
    texts = ["How do I install MMFoo?", "晚安", "导出 ONNX 报错怎么办", "lol"]
    contexts = [make_context(config, t) for t in texts]
    await asyncio.gather(*(pipeline.run(c) for c in contexts))
    assert batches == [4]
    assert [c.decision for c in contexts] == [
        "answered", "ignored: off-topic", "answered", "ignored: off-topic",
    ]  # fmt: skip


async def test_changed_examples_are_refitted_and_picked_up(tmp_path: Path, indexed: Path) -> None:
    root = tmp_path / "bot"
    shutil.copytree(indexed.parent, root)
    path = write_gate_config(root)
    pipeline, config = await pipeline_for(path)
    middleware = next(m for m in pipeline.middlewares if isinstance(m, RejectEmbedding))
    gate = middleware.gate
    assert gate.refresh() is None  # nothing changed since warm-up
    assert gate.stored is not None
    before = gate.stored.meta["examples"]

    bad = json.loads((root / "bad.json").read_text())
    (root / "bad.json").write_text(json.dumps([*bad, "这周末天气真好"], ensure_ascii=False))
    refit = gate.refresh()  # what the daemon's job does, on the same object
    assert refit is not None and refit.reason.startswith("examples changed")
    assert gate.refresh() is None

    ctx = make_context(config, "How do I install MMFoo?")
    await pipeline.run(ctx)
    assert gate.stored.meta["examples"] != before
    assert gate.stored.meta["bad"] == 15
    assert ctx.decision == "answered"


async def test_a_pipeline_without_a_knowledge_base_is_a_config_error(tmp_path: Path) -> None:
    path = write_gate_config(tmp_path, knowledge={"sources": []})
    config = load_config(path)
    services = build_services(config, llm=ScriptedChatModel())
    with pytest.raises(ConfigError, match=r"reject\.embedding needs a knowledge base"):
        await build_pipelines(services)[""].warm_up()


async def test_missing_example_file_is_a_config_error(tmp_path: Path) -> None:
    path = write_gate_config(tmp_path, rejection={"good_questions": "missing.json"})
    build_index(load_config(path))
    config = load_config(path)
    services = build_services(config, llm=ScriptedChatModel())
    with pytest.raises(ConfigError, match=r"rejection: cannot calibrate.*missing\.json"):
        await build_pipelines(services)[""].warm_up()
