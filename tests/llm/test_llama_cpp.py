"""The real llama-cpp-python path with the bundled SmolLM2-135M GGUF, in its supervised process.

No test expects particular words: which token wins a near tie depends on the CPU's kernels and
on how the prompt was batched (a prompt evaluated in one batch or reusing the KV cache gives
logits that differ in the last digits). The tests assert what holds on every build.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bot.config import LLMSettings
from bot.llm.llama_cpp import LlamaCppChatModel, bundled_model_path
from bot.llm.protocol import ContextTooLong, TokenCounting, Truncated, collect_notes
from bot.llm.scoring import Scoring, score

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

MESSAGES: Any = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
# llama-cpp-python holds back a token that ends inside a UTF-8 character and may cross
# max_tokens by up to 3 to finish it (its multibyte check skips the length check).
UTF8_OVERRUN = 3


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[LlamaCppChatModel]:
    llm = LlamaCppChatModel(LLMSettings(n_ctx=1024, n_threads=1, temperature=0.0))
    await llm.warm_up()
    yield llm
    await llm.close()


async def test_the_plan_comes_from_the_gguf_header(model: LlamaCppChatModel) -> None:
    assert model.model_path == bundled_model_path()
    assert model.plan.status == "cpu" and model.plan.n_gpu_layers == 0
    assert model.context_length == 1024  # llm.n_ctx set explicitly
    assert isinstance(model, TokenCounting) and isinstance(model, Scoring)
    health = model.health()
    assert health["state"] == "up" and health["pid"] and health["restarts"] == 0


async def test_completes_with_the_models_own_counts_and_finish_reason(
    model: LlamaCppChatModel,
) -> None:
    completion = await model.complete(MESSAGES, max_tokens=6)
    assert completion.text.strip() and completion.finish_reason == "length"
    assert 6 <= completion.completion_tokens <= 6 + UTF8_OVERRUN
    # Our count of the templated prompt is the model's own.
    assert model.count_message_tokens(MESSAGES) == completion.prompt_tokens


async def test_a_stream_cut_at_max_tokens_is_truncated_not_an_answer(
    model: LlamaCppChatModel,
) -> None:
    pieces: list[str] = []
    with pytest.raises(Truncated):
        async for piece in model.stream(MESSAGES, max_tokens=3):
            pieces.append(piece)
    assert pieces and all(isinstance(p, str) for p in pieces)


async def test_a_whole_stream_and_a_completion_from_the_same_state_agree(
    model: LlamaCppChatModel,
) -> None:
    await model.complete(MESSAGES, max_tokens=2)  # both calls below then reuse the same prefix
    with collect_notes() as notes:
        pieces = [piece async for piece in model.stream(MESSAGES, max_tokens=64)]
    completion = await model.complete(MESSAGES, max_tokens=64)
    assert notes["finish_reason"] == "stop" == completion.finish_reason
    assert "".join(pieces) == completion.text
    assert 0 < notes["completion_tokens"] <= completion.completion_tokens


async def test_scores_with_grammar_and_probabilities(model: LlamaCppChatModel) -> None:
    messages: Any = [
        {"role": "user", "content": "Rate from 0 to 10 how sunny Paris is. Reply with a number."}
    ]
    result = await score(model, messages)
    assert result.method == "probabilities"
    assert result.value is not None and 0 <= result.value <= 10
    assert result.text in {str(i) for i in range(11)}  # the grammar allows nothing else
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.mass is not None and 0 < result.mass <= 1
    # SmolLM2 spells 10 as "1" "0": its share came from the continuation after "1".
    assert 10 in result.probabilities


async def test_a_prompt_beyond_the_context_fails_clearly(model: LlamaCppChatModel) -> None:
    long: Any = [{"role": "user", "content": "Paris " * 1500}]
    with pytest.raises(ContextTooLong):
        await model.complete(long, max_tokens=4)
    with pytest.raises(ContextTooLong):
        await model.score(long)
    assert model.health()["restarts"] == 0  # refused, not crashed


async def test_a_malformed_grammar_is_refused_not_a_crash(model: LlamaCppChatModel) -> None:
    """llama.cpp's process dies on a grammar it cannot parse; the service answers 400."""
    async with httpx.AsyncClient(base_url=model.process.url, timeout=60) as client:
        bad = {"messages": MESSAGES, "max_tokens": 2, "grammar": "root ::= ("}
        response = await client.post("/v1/chat/completions", json=bad)
        assert response.status_code == 400 and "grammar" in response.text
        good = {**bad, "grammar": 'root ::= "Paris"'}
        response = await client.post("/v1/chat/completions", json=good)
        assert response.json()["choices"][0]["message"]["content"] == "Paris"
    assert model.health()["state"] == "up" and model.health()["restarts"] == 0


async def test_generation_runs_off_the_event_loop(model: LlamaCppChatModel) -> None:
    """Other groups' messages keep moving while the model generates."""
    answer = asyncio.create_task(model.complete(MESSAGES, max_tokens=16))
    ticks = 0
    while not answer.done():
        await asyncio.sleep(0.001)
        ticks += 1
    assert 0 < (await answer).completion_tokens <= 16 + UTF8_OVERRUN
    assert ticks > 1
