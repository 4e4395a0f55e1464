"""No broken answer ever reaches the group: each broken stream a server can send (tests/llm/
fake_servers.py), through the real bot (inbox, pipeline, outbox) to a recording adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app.services import build_chat_model
from bot.config import Config
from bot.llm.hybrid import HybridChatModel
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from tests.fakes import RecordingAdapter, ScriptedChatModel, make_message
from tests.llm.fake_servers import BROKEN_STREAMS, FakeOpenAI, Step

pytestmark = pytest.mark.integration


async def ask(
    script: list[Step],
    config_factory: Callable[..., Config],
    bot_factory: Callable[..., Any],
    **llm: Any,
) -> tuple[dict[str, Any], RecordingAdapter, FakeOpenAI]:
    """One question to a bot whose model is the fake server running ``script``."""
    server = FakeOpenAI(script=script)
    adapter = RecordingAdapter()
    async with server.running() as url:
        remote = {"base_url": url, "model": "fake", "attempts": 1}
        config = config_factory({"llm": {"backend": "openai", "remote": remote, **llm}})
        bot = await bot_factory(config, [adapter], build_chat_model(config))
        stored = await bot.inbox.receive(make_message())
        await bot.join()
        view = await bot.inbox.message_view(stored.id)
    return view, adapter, server


def generate_step(view: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in view["trace"] if s["name"] == "generate")
    return step


@pytest.mark.parametrize("fault", [f for f in BROKEN_STREAMS if f != "length"])
async def test_a_broken_answer_is_asked_for_again_then_fails_without_a_word_posted(
    fault: str, config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    broken = BROKEN_STREAMS[fault]
    view, adapter, server = await ask([broken, broken], config_factory, bot_factory)
    assert adapter.sent == []
    assert len(server.requests) == 2  # asked once more
    assert view["status"] == "failed" and view["reply"] is None
    assert view["decision"].startswith("failed: BrokenAnswer: openai:fake: ")
    step = generate_step(view)
    assert step["verdict"].startswith("error: BrokenAnswer")
    assert len(step["detail"]["retried_after"]) == 1


@pytest.mark.parametrize("fault", ["no [DONE]", "special token", "data: 42"])
async def test_a_broken_answer_then_a_whole_one_posts_only_the_whole_one(
    fault: str, config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    good = Step(pieces=["Run ", "pip ", "install ", "mmdet."])
    view, adapter, _ = await ask([BROKEN_STREAMS[fault], good], config_factory, bot_factory)
    assert [reply.text for _, reply in adapter.sent] == ["Run pip install mmdet."]
    assert view["status"] == "answered"
    detail = generate_step(view)["detail"]
    assert detail["finish_reason"] == "stop" and detail["completion_tokens"] == 4
    assert detail["retried_after"][0].startswith("openai:fake: ")


async def test_an_answer_cut_at_max_tokens_is_not_posted_and_the_trace_says_why(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    view, adapter, server = await ask([BROKEN_STREAMS["length"]], config_factory, bot_factory)
    assert adapter.sent == [] and len(server.requests) == 1
    assert (view["status"], view["decision"]) == ("ignored", "ignored: truncated")
    detail = generate_step(view)["detail"]
    assert detail["finish_reason"] == "length" and detail["max_tokens"] == 256
    assert "raise middleware.generate.max_tokens" in detail["why"]


async def test_a_hybrid_falls_back_to_the_local_model_on_a_malformed_first_chunk(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    server = FakeOpenAI(script=[BROKEN_STREAMS["content as a number"]])
    adapter = RecordingAdapter()
    async with server.running() as url:
        config = config_factory({"llm": {"backend": "hybrid", "routing": {"answers": "remote"}}})
        remote = OpenAICompatibleChatModel(
            config.llm.remote.model_copy(update={"base_url": url, "attempts": 1}), config.llm
        )
        local = ScriptedChatModel("local answer")
        llm = HybridChatModel(local, remote, config.llm.routing)
        bot = await bot_factory(config, [adapter], llm)
        stored = await bot.inbox.receive(make_message())
        await bot.join()
        view = await bot.inbox.message_view(stored.id)
    assert [reply.text for _, reply in adapter.sent] == ["local answer"]
    detail = generate_step(view)["detail"]
    assert detail["model"] == "scripted"
    assert "malformed stream chunk" in detail["fallbacks"][0]
