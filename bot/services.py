"""Long-lived things the middlewares share, built once by the composition root (bot.app) from
the config and passed in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.config import Config
from bot.llm.protocol import ChatModel
from bot.message import utcnow
from bot.prompts import Prompts

if TYPE_CHECKING:
    from knowledge.knowledge_base import KnowledgeBase
    from knowledge.rejection.gate import RejectionGate


@dataclass
class Services:
    config: Config
    prompts: Prompts
    llm: ChatModel
    clock: Callable[[], datetime] = field(default=utcnow)
    # None when bot.yaml lists no knowledge.sources.
    knowledge: KnowledgeBase | None = None
    # The rejection gate, when there is a knowledge base to measure messages against.
    gate: RejectionGate | None = None

    async def warm_up(self) -> None:
        await self.llm.warm_up()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.warm_up)

    async def close(self) -> None:
        await self.llm.close()
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.close)
