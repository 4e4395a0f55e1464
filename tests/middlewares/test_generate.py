"""The generate middleware through the real pipeline: prompts, packing, routing, trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config, LLMSettings, RemoteLLMSettings, RoutingSettings
from bot.context import Chunk, HistoryTurn
from bot.llm.hybrid import HybridChatModel
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from bot.llm.protocol import estimate_tokens
from bot.message import Reply
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel, make_context
from tests.llm.fake_servers import FakeOpenAI, Step

pytestmark = pytest.mark.unit


class SmallModel(ScriptedChatModel):
    """A scripted model with a small context window and a token count."""

    def __init__(self, *args: Any, context_length: int = 2048, name: str = "small", **kw: Any):
        super().__init__(*args, **kw)
        self.context_length = context_length
        self.name = name

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def count_message_tokens(self, messages: Any) -> int:
        return sum(estimate_tokens(m["content"]) + 8 for m in messages)


CHUNKS = [
    Chunk(
        text="Install with pip install mmdet.",
        source="docs/install.md",
        title="Install",
        score=0.9,
    ),
    Chunk(text="MMCV needs a matching CUDA build.", source="docs/mmcv.md", score=0.4),
]


async def test_prompt_numbers_chunks_and_traces_tokens_and_timing(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["generate"]})
    llm = SmallModel("Use pip install mmdet [1].")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    ctx = make_context(
        config,
        "How do I install mmdet?",
        chunks=list(CHUNKS),
        history=[HistoryTurn("bob", "hi all", None)],
    )
    reply = await pipeline.run(ctx)
    assert reply == Reply(text="Use pip install mmdet [1].")
    system, user = llm.calls[0]
    assert "cite the passages you used as [1], [2]" in system["content"]
    assert "[1] docs/install.md § Install\nInstall with pip install mmdet." in user["content"]
    assert "[2] docs/mmcv.md" in user["content"]
    assert "bob: hi all" in user["content"]
    detail = ctx.trace[0].detail
    assert detail["model"] == "small" and detail["chunks_used"] == 2
    assert detail["prompt_tokens"] == llm.count_message_tokens(llm.calls[0])
    assert detail["prompt_budget"] == 2048 - 256 - 32  # context - max_tokens - reserve
    assert detail["ttft_ms"] <= detail["generation_ms"]
    # The scripted model reports no token count: the pieces it streamed (a word each) count.
    assert detail["completion_tokens"] == 5 and detail["finish_reason"] == "stop"


async def test_chinese_question_gets_the_chinese_templates(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["normalize", "generate"]})
    llm = ScriptedChatModel("用 pip install mmdet 安装 [1]。")
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    await pipeline.run(make_context(config, "mmdet 怎么安装？", chunks=list(CHUNKS)))
    system, user = llm.calls[0]
    assert "你是HuixiangDou" in system["content"] and "参考资料：" in user["content"]
    assert user["content"].rstrip().endswith("资料中没有答案时，请直接说明。")


async def test_weakest_chunks_are_dropped_to_fit_the_context(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["generate"], "llm": {"max_tokens": 64}})
    llm = SmallModel("answer", context_length=1600)
    chunks = [
        Chunk(text="strong " * 200, source="a.md", score=0.9),
        Chunk(text="weak " * 200, source="b.md", score=0.1),
        Chunk(text="medium " * 200, source="c.md", score=0.5),
    ]
    pipeline = build_pipelines(build_services(config, llm=llm))[""]
    ctx = make_context(config, "why?", chunks=chunks)
    await pipeline.run(ctx)
    prompt = llm.calls[0][1]["content"]
    assert "[1] a.md" in prompt and "[2] c.md" in prompt and "b.md" not in prompt
    assert [c.source for c in ctx.chunks] == ["a.md", "c.md"]  # what cite will number
    assert ctx.trace[0].detail["chunks_dropped"] == 1


@pytest.mark.integration
async def test_fallback_to_a_smaller_local_model_repacks_the_prompt(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory({"pipeline": ["generate"], "llm": {"max_tokens": 64}})
    server = FakeOpenAI(default=Step(status=500))
    local = SmallModel("local answer [1]", context_length=700, name="local")
    chunks = [
        Chunk(text=f"passage {i} " * 60, source=f"{i}.md", score=1 - i / 10) for i in range(6)
    ]
    async with server.running() as url:
        remote = OpenAICompatibleChatModel(
            RemoteLLMSettings(base_url=url, model="big", attempts=1, max_context=32768),
            LLMSettings(),
        )
        llm = HybridChatModel(local, remote, RoutingSettings(answers="remote"))
        pipeline = build_pipelines(build_services(config, llm=llm))[""]
        ctx = make_context(config, "why?", chunks=chunks)
        reply = await pipeline.run(ctx)
        await remote.close()
    assert reply is not None and reply.text == "local answer [1]"
    sent_remote = server.requests[0]["messages"][1]["content"]
    assert all(f"{i}.md" in sent_remote for i in range(6))  # the remote got every chunk
    detail = ctx.trace[0].detail
    assert detail["model"] == "local" and detail["route_reason"].startswith("fallback after")
    assert "HTTP 500" in detail["fallbacks"][0]
    assert 0 < detail["chunks_used"] < 6 and detail["prompt_tokens"] <= detail["prompt_budget"]
