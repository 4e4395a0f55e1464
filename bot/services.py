"""Long-lived things the middlewares share, built once from the config and passed in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.config import Config
from bot.llm.base import ChatModel
from bot.message import utcnow
from bot.prompts import Prompts

if TYPE_CHECKING:
    from knowledge.base import KnowledgeBase


@dataclass
class Services:
    config: Config
    prompts: Prompts
    llm: ChatModel
    clock: Callable[[], datetime] = field(default=utcnow)
    # None when bot.yaml lists no knowledge.sources.
    knowledge: KnowledgeBase | None = None

    async def warm_up(self) -> None:
        await self.llm.warm_up()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.warm_up)

    async def close(self) -> None:
        await self.llm.close()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.close)


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


def build_knowledge(config: Config) -> KnowledgeBase | None:
    """The knowledge base from ``knowledge:`` (opening is cheap: warm_up loads it)."""
    if not config.knowledge.sources:
        return None
    from knowledge.base import KnowledgeBase

    return KnowledgeBase.open(config.knowledge, config.work_dir)


def build_services(config: Config, llm: ChatModel | None = None) -> Services:
    return Services(
        config=config,
        prompts=Prompts(config.prompts.dir),
        llm=llm if llm is not None else build_chat_model(config),
        knowledge=build_knowledge(config),
    )
