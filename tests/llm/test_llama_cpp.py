"""The real llama-cpp-python path with the bundled SmolLM2-135M GGUF."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import LLMSettings
from bot.llm.llama_cpp import LlamaCppChatModel, bundled_model_path
from bot.llm.protocol import ContextTooLong, TokenCounting
from bot.llm.scoring import Scoring, score

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES: Any = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppChatModel]:
    llm = LlamaCppChatModel(LLMSettings(n_ctx=1024, n_threads=2, temperature=0.0))
    yield llm
    asyncio.run(llm.close())


def test_the_plan_comes_from_the_gguf_header(model: LlamaCppChatModel) -> None:
    assert model.model_path == bundled_model_path()
    assert model.plan.status == "cpu" and model.plan.n_gpu_layers == 0
    assert model.context_length == 1024  # llm.n_ctx set explicitly
    assert isinstance(model, TokenCounting) and isinstance(model, Scoring)


async def test_loads_streams_and_respects_max_tokens(model: LlamaCppChatModel) -> None:
    await model.warm_up()
    pieces = [piece async for piece in model.stream(MESSAGES, max_tokens=6)]
    assert pieces and all(isinstance(p, str) for p in pieces)
    completion = await model.complete(MESSAGES, max_tokens=6)
    assert completion.completion_tokens == 6 and completion.finish_reason == "length"
    assert "".join(pieces) == completion.text  # greedy: the same six tokens both ways
    # Our count of the templated prompt is the model's own.
    assert model.count_message_tokens(MESSAGES) == completion.prompt_tokens


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


async def test_generation_runs_off_the_event_loop(model: LlamaCppChatModel) -> None:
    """Other groups' messages keep moving while the model generates."""
    await model.warm_up()
    answer = asyncio.create_task(model.complete(MESSAGES, max_tokens=16))
    ticks = 0
    while not answer.done():
        await asyncio.sleep(0.001)
        ticks += 1
    assert 0 < (await answer).completion_tokens <= 16
    assert ticks > 1
