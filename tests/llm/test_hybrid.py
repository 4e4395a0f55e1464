"""Hybrid routing: scoring prompts local, long answers remote, and fallback both ways.

The remote side is the real OpenAI-compatible client against the fake server; the local side is
the scripted model with a context window (the real llama.cpp path has its own tests).
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import LLMSettings, RemoteLLMSettings, RoutingSettings
from bot.llm.hybrid import HybridChatModel
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from bot.llm.protocol import LLMError, collect_notes, estimate_tokens
from bot.llm.scoring import score
from tests.fakes import ScriptedChatModel
from tests.llm.fake_servers import FakeOpenAI, Step

pytestmark = pytest.mark.integration

SHORT: Any = [{"role": "user", "content": "Is this a question? Reply 0-10."}]
LONG: Any = [{"role": "user", "content": "context " * 3000 + "so how do I install it?"}]


class LocalModel(ScriptedChatModel):
    """The scripted model with a context window and a token count."""

    name = "local"

    def __init__(self, *args: Any, context_length: int = 4096, fail: bool = False, **kw: Any):
        super().__init__(*args, **kw)
        self.context_length = context_length
        self.fail = fail

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def count_message_tokens(self, messages: Any) -> int:
        return sum(estimate_tokens(m["content"]) + 8 for m in messages)

    async def complete(self, messages: Any, **kwargs: Any) -> Any:
        if self.fail:
            self.calls.append(messages)
            raise LLMError("local: out of memory")
        return await super().complete(messages, **kwargs)


async def sleep_nothing(seconds: float) -> None:
    return None


def hybrid(url: str, local: LocalModel, **routing: Any) -> HybridChatModel:
    remote = OpenAICompatibleChatModel(
        RemoteLLMSettings(
            base_url=url,
            model="big",
            attempts=2,
            retry_initial_seconds=0.01,
            max_context=65536,
            requests_per_minute=routing.pop("rpm", None),
            max_wait_seconds=0,
        ),
        LLMSettings(max_tokens=32),
        sleep=sleep_nothing,
    )
    return HybridChatModel(local, remote, RoutingSettings(**routing))


async def test_scores_go_local_and_long_answers_go_remote() -> None:
    server = FakeOpenAI(default=Step(text="remote answer"))
    local = LocalModel(["8", "local answer"], context_length=32768)
    async with server.running() as url:
        llm = hybrid(url, local)
        with collect_notes() as notes:
            result = await score(llm, SHORT)
        assert result.value == 8 and notes["route"] == "local"
        assert "scoring prompt goes local" in notes["route_reason"]
        with collect_notes() as notes:
            short = await llm.complete(SHORT)
        assert short.text == "local answer" and notes["route"] == "local"
        with collect_notes() as notes:
            long = await llm.complete(LONG, max_tokens=32)
        assert long.text == "remote answer" and notes["route"] == "openai:big"
        assert "> local_max_prompt_tokens 3072" in notes["route_reason"]
        await llm.close()
    assert len(server.requests) == 1


async def test_remote_failure_falls_back_to_local_and_says_why() -> None:
    server = FakeOpenAI(default=Step(status=503))
    local = LocalModel("local answer", context_length=32768)
    async with server.running() as url:
        llm = hybrid(url, local, answers="remote")
        with collect_notes() as notes:
            completion = await llm.complete(SHORT)
        await llm.close()
    assert completion.text == "local answer"
    assert notes["route"] == "local" and notes["route_reason"].startswith("fallback after")
    assert "HTTP 503" in notes["fallbacks"][0]
    assert len(notes["retries"]) == 1  # attempts: 2
    assert len(server.requests) == 2


async def test_over_budget_remote_falls_back_without_waiting() -> None:
    server = FakeOpenAI(default=Step(text="remote answer"))
    local = LocalModel("local answer")
    async with server.running() as url:
        llm = hybrid(url, local, answers="remote", rpm=1)
        first = await llm.complete(SHORT)
        with collect_notes() as notes:
            second = await llm.complete(SHORT)
        await llm.close()
    assert (first.text, second.text) == ("remote answer", "local answer")
    assert "per-minute budget" in notes["fallbacks"][0]


async def test_local_failure_falls_back_to_remote_for_scores() -> None:
    server = FakeOpenAI(default=Step(text="6"))
    async with server.running() as url:
        llm = hybrid(url, LocalModel(fail=True))
        with collect_notes() as notes:
            result = await score(llm, SHORT)
        await llm.close()
    assert result.value == 6 and notes["route"] == "openai:big"
    assert notes["fallbacks"] == ["local: local: out of memory"]


async def test_without_fallback_the_error_stands() -> None:
    server = FakeOpenAI(default=Step(status=500))
    async with server.running() as url:
        llm = hybrid(url, LocalModel("never used"), answers="remote", fallback=False)
        with pytest.raises(LLMError, match="HTTP 500"):
            await llm.complete(SHORT)
        await llm.close()


async def test_stream_falls_back_before_the_first_token_only() -> None:
    server = FakeOpenAI(
        script=[Step(status=500), Step(status=500), Step(pieces=["a", "b"], break_after=1)]
    )
    local = LocalModel("local streamed answer")
    async with server.running() as url:
        llm = hybrid(url, local, answers="remote")
        with collect_notes() as notes:
            pieces = [p async for p in llm.stream(SHORT)]
        assert "".join(pieces).strip() == "local streamed answer"
        assert notes["route"] == "local"
        with pytest.raises(LLMError, match="broke off"):
            [p async for p in llm.stream(SHORT)]
        await llm.close()


@pytest.mark.slow
async def test_real_local_model_scores_with_probabilities_and_remote_answers_long() -> None:
    from bot.llm.llama_cpp import LlamaCppChatModel

    server = FakeOpenAI(default=Step(pieces=["remote ", "answer"]))
    local = LlamaCppChatModel(LLMSettings(n_ctx=1024, n_threads=1))
    async with server.running() as url:
        remote = OpenAICompatibleChatModel(
            RemoteLLMSettings(base_url=url, model="big", max_context=65536), LLMSettings()
        )
        llm = HybridChatModel(local, remote, RoutingSettings())
        await llm.warm_up()
        with collect_notes() as notes:
            result = await score(llm, SHORT)
        assert result.method == "probabilities" and notes["route"] == local.name
        with collect_notes() as notes:
            pieces = [p async for p in llm.stream(LONG, max_tokens=32)]
        assert "".join(pieces) == "remote answer" and notes["route"] == "openai:big"
        assert "do not fit the local context 1024" in notes["route_reason"]
        await llm.close()
