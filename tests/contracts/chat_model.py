"""The ChatModel contract (bot/llm/protocol.py): warm_up, complete, stream and close, with
completions that carry their token counts and finish reason, and streams that never pass half an
answer off as a whole one. A subclass provides the ``model`` fixture (an async factory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from bot.llm.protocol import ChatMessage, ChatModel, Completion, Truncated

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

MakeModel = Callable[[], Awaitable[ChatModel]]


class ChatModelContract:
    @pytest.fixture
    def model(self) -> MakeModel:
        raise NotImplementedError("an implementation's test class provides this fixture")

    async def test_complete_gives_text_tokens_and_a_finish_reason(self, model: MakeModel) -> None:
        llm = await model()
        assert isinstance(llm, ChatModel)
        await llm.warm_up()
        completion = await llm.complete(MESSAGES, max_tokens=8)
        assert isinstance(completion, Completion)
        assert completion.text.strip()
        assert 0 < completion.completion_tokens <= 8
        assert completion.prompt_tokens > 0
        assert completion.finish_reason in {"stop", "length"}
        await llm.close()

    async def test_stream_yields_text_pieces(self, model: MakeModel) -> None:
        llm = await model()
        pieces = [piece async for piece in llm.stream(MESSAGES, max_tokens=64)]
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces).strip()
        await llm.close()

    async def test_a_stream_cut_at_max_tokens_is_truncated(self, model: MakeModel) -> None:
        llm = await model()
        with pytest.raises(Truncated):
            [piece async for piece in llm.stream(MESSAGES, max_tokens=2)]
        await llm.close()

    async def test_max_tokens_bounds_the_answer(self, model: MakeModel) -> None:
        llm = await model()
        short = await llm.complete(MESSAGES, max_tokens=2)
        assert short.completion_tokens <= 2
        await llm.close()
