"""The ChatModel contract (tests/contracts/chat_model.py) for each backend: the bundled GGUF
through llama-cpp-python, and an OpenAI-compatible server (a fake speaking the real format)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.config import LLMSettings, RemoteLLMSettings
from bot.llm.llama_cpp import LlamaCppChatModel
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from tests.contracts.chat_model import ChatModelContract, MakeModel
from tests.llm.fake_servers import FakeOpenAI, Step

pytestmark = pytest.mark.integration


class TestLlamaCppContract(ChatModelContract):
    @pytest.fixture
    def model(self) -> MakeModel:
        async def make() -> LlamaCppChatModel:
            return LlamaCppChatModel(LLMSettings(n_ctx=1024, n_threads=1, seed=7))

        return make


class TestOpenAICompatibleContract(ChatModelContract):
    @pytest.fixture
    async def model(self) -> AsyncIterator[MakeModel]:
        server = FakeOpenAI(default=Step(text="Paris is the capital of France ."))
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(server.running())

            async def make() -> OpenAICompatibleChatModel:
                return OpenAICompatibleChatModel(RemoteLLMSettings(base_url=url), LLMSettings())

            yield make
