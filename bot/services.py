"""Long-lived things the middlewares share, built once by the composition root (bot.app) from
the config and passed in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.adapter import Adapter
from bot.config import Config
from bot.llm.protocol import ChatModel
from bot.message import utcnow
from bot.prompts import Prompts
from bot.storage.db import Database

if TYPE_CHECKING:
    from knowledge.knowledge_base import KnowledgeBase
    from knowledge.rejection.gates import RejectionGates


@dataclass
class Services:
    config: Config
    prompts: Prompts
    llm: ChatModel
    clock: Callable[[], datetime] = field(default=utcnow)
    # None when bot.yaml lists no knowledge.sources.
    knowledge: KnowledgeBase | None = None
    # The rejection gates (the global one and the groups' own), when there is a knowledge
    # base to measure messages against.
    gates: RejectionGates | None = None
    # Given by the runtime (bot.runtime.Bot) before the pipelines are built: the database and
    # the running adapters, for middlewares that count, remember or delete (the gate).
    database: Database | None = None
    adapters: dict[str, Adapter] = field(default_factory=dict)

    async def warm_up(self) -> None:
        await self.llm.warm_up()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.warm_up)

    async def close(self) -> None:
        await self.llm.close()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.close)
