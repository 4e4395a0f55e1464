"""A group chat for the manners tests: the real core and the playground adapter, driven through
its HTTP API, with a clock the test moves (held replies are released by moving it on, never by
sleeping)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.playground.adapter import PlaygroundAdapter, PlaygroundSettings
from bot.adapter import AdapterEnvironment
from bot.app.services import build_services
from bot.config import Config
from bot.llm.protocol import ChatModel
from bot.runtime import Bot
from bot.storage.db import Database
from tests.fakes import ScriptedChatModel

# Wednesday 2 December 2026, 10:00 in Shanghai.
START = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
PIPELINE = ["normalize", "gate", "tests.plugins:Confidence", "generate"]


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class GroupChat:
    """One bot, its playground API, and the clock; ``say`` posts as a member."""

    config: Config
    bot: Bot
    client: httpx.AsyncClient
    clock: Clock
    llm: Any
    group: str = "oc_group"

    async def say(self, text: str, sender: str = "alice", **fields: Any) -> dict[str, Any]:
        """Post a message, let the bot decide, and return the message's view."""
        body = {"text": text, "sender": sender, "conversation_id": self.group, **fields}
        posted = await self.client.post("/api/messages", json=body)
        assert posted.status_code == 202, posted.text
        await self.bot.join()
        return await self.view(posted.json()["id"])

    async def view(self, message_id: int) -> dict[str, Any]:
        response = await self.client.get(f"/api/messages/{message_id}")
        assert response.status_code == 200
        return dict(response.json())

    async def react(self, message_id: int, sender: str, reaction: str) -> httpx.Response:
        return await self.client.post(
            f"/api/messages/{message_id}/reactions", json={"sender": sender, "reaction": reaction}
        )

    async def later(self, **delta: float) -> int:
        """Move the clock on and release the held replies that are due."""
        self.clock.advance(**delta)
        released = await self.bot.release_held()
        await self.bot.join()
        return released

    async def restart(self) -> None:
        """Stop the bot (as a crash or deploy would) and start a new one on the same database."""
        await self.client.aclose()
        await self.bot.stop()
        self.bot.db.dispose()
        self.bot, self.client = await start_bot(self.config, self.clock, self.llm)


async def start_bot(config: Config, clock: Clock, llm: ChatModel) -> tuple[Bot, httpx.AsyncClient]:
    database = Database(config.database_url)
    database.upgrade()
    services = build_services(config, llm=llm)
    services.clock = clock
    adapter = PlaygroundAdapter(PlaygroundSettings(), AdapterEnvironment(config.work_dir, config))
    bot = Bot(services, database, [adapter])
    await bot.start()
    transport = httpx.ASGITransport(app=Starlette(routes=adapter.admin_routes))
    return bot, httpx.AsyncClient(transport=transport, base_url="http://playground")


MakeChat = Callable[..., Awaitable[GroupChat]]


@pytest.fixture
async def group_chat(config_factory: Callable[..., Config]) -> AsyncIterator[MakeChat]:
    """``await group_chat(gate={...}, model=..., pipeline=[...], groups={...})``: ``gate`` is
    ``middleware.gate``, ``middleware`` the other middlewares' settings, the rest sections of
    bot.yaml."""
    chats: list[GroupChat] = []

    async def make(
        gate: dict[str, Any] | None = None,
        model: Any = None,
        pipeline: list[str] | None = None,
        middleware: dict[str, Any] | None = None,
        **sections: Any,
    ) -> GroupChat:
        config = config_factory(
            {
                "pipeline": pipeline or PIPELINE,
                "middleware": {
                    "gate": {"timezone": "Asia/Shanghai", **(gate or {})},
                    **(middleware or {}),
                },
                **sections,
            }
        )
        clock = Clock()
        model = model or ScriptedChatModel(lambda messages: "Run pip install mmfoo, then check.")
        bot, client = await start_bot(config, clock, model)
        chat = GroupChat(config, bot, client, clock, model)
        chats.append(chat)
        return chat

    yield make
    for chat in chats:
        await chat.client.aclose()
        await chat.bot.stop()
        chat.bot.db.dispose()
