"""Long-lived things the middlewares share, built once from the config and passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.config import Config
from bot.llm.base import ChatModel
from bot.message import utcnow
from bot.prompts import Prompts


@dataclass
class Services:
    config: Config
    prompts: Prompts
    llm: ChatModel
    clock: Callable[[], datetime] = field(default=utcnow)

    async def warm_up(self) -> None:
        await self.llm.warm_up()

    async def close(self) -> None:
        await self.llm.close()


def build_chat_model(config: Config) -> ChatModel:
    """The model for ``llm.backend``: a local GGUF, a remote OpenAI-compatible server, or both
    behind hybrid routing. Nothing is loaded or connected until ``warm_up``."""
    from bot.llm.llama_cpp import LlamaCppChatModel
    from bot.llm.openai_compatible import OpenAICompatibleChatModel

    settings = config.llm
    if settings.backend == "llama_cpp":
        return LlamaCppChatModel(settings)
    if settings.backend == "openai":
        return OpenAICompatibleChatModel(settings.remote, settings)
    if settings.backend == "hybrid":
        from bot.llm.hybrid import HybridChatModel

        return HybridChatModel(
            LlamaCppChatModel(settings),
            OpenAICompatibleChatModel(settings.remote, settings),
            settings.routing,
        )
    raise ValueError(f"unknown llm.backend {settings.backend!r}")


def build_services(config: Config, llm: ChatModel | None = None) -> Services:
    return Services(
        config=config,
        prompts=Prompts(config.prompts.dir),
        llm=llm if llm is not None else build_chat_model(config),
    )
