"""A fake DingTalk, and a real bot (core, SDK, adapter) connected to it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from adapters.dingtalk.adapter import DingTalkAdapter
from bot.adapter import build_adapters
from bot.runtime import Bot
from bot.storage import repo
from bot.storage.models import MessageRecord
from tests.adapters.dingtalk.fake_dingtalk import FakeDingTalk
from tests.contracts.adapter import ANSWER, PIPELINE
from tests.fakes import ScriptedChatModel


@dataclass
class DingTalkBot:
    bot: Bot
    adapter: DingTalkAdapter
    fake: FakeDingTalk
    llm: ScriptedChatModel

    async def deliver(self, data: dict[str, Any]) -> dict[str, Any]:
        """Push a robot message over the stream and return the client's ack."""
        fake = self.fake
        frame_id = await fake.push_message(data)
        await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
        ack = fake.ack_for(frame_id)
        assert ack is not None
        return ack

    async def messages(self) -> list[dict[str, Any]]:
        """Every stored message, as `huixiangdou-bot trace` shows it."""

        def ids(session: Any) -> list[int]:
            return list(session.scalars(select(MessageRecord.id).order_by(MessageRecord.id)))

        views = [await self.bot.db.run(repo.message_view, i) for i in await self.bot.db.run(ids)]
        return [v for v in views if v is not None]

    async def only_message(self) -> dict[str, Any]:
        await self.bot.join()
        messages = await self.messages()
        assert len(messages) == 1, messages
        return messages[0]

    def send_step(self, view: dict[str, Any]) -> dict[str, Any]:
        [step] = [s for s in view["trace"] if s["name"] == "send"]
        return dict(step)


MakeDingTalkBot = Callable[..., Awaitable[DingTalkBot]]


@pytest.fixture
async def dingtalk_bot(
    bot_factory: Callable[..., Any],
    config_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MakeDingTalkBot]:
    """Start a fake DingTalk and a bot with the DingTalk adapter pointed at it, connected.

    Shut down in order: the bot (its stream thread), then the fake.
    """
    stack = contextlib.AsyncExitStack()

    async def make(
        *,
        llm: ScriptedChatModel | None = None,
        pipeline: list[str] | None = None,
        groups: dict[str, Any] | None = None,
        connect: bool = True,
        **settings: Any,
    ) -> DingTalkBot:
        fake = FakeDingTalk(
            client_id=f"ding{uuid.uuid4().hex[:16]}", client_secret="s3cr3t-" + uuid.uuid4().hex
        )
        await stack.enter_async_context(fake.running())
        monkeypatch.setenv("DINGTALK_CLIENT_SECRET", fake.client_secret)
        dingtalk: dict[str, Any] = {
            "client_id": fake.client_id,
            "client_secret": "${DINGTALK_CLIENT_SECRET}",
            "gateway_endpoint": fake.url,
            "openapi_endpoint": fake.url,
            "reconnect_initial_seconds": 0.02,
            "reconnect_max_seconds": 0.2,
            **settings,
        }
        config = config_factory(
            {
                "adapters": {"playground": {"enabled": False}, "dingtalk": dingtalk},
                "pipeline": pipeline or PIPELINE,
                "groups": groups or {},
            }
        )
        adapters = build_adapters(config)
        assert [a.name for a in adapters] == ["dingtalk"]
        adapter = adapters[0]
        assert isinstance(adapter, DingTalkAdapter)
        model = llm or ScriptedChatModel(ANSWER)
        bot = await bot_factory(config, adapters, llm=model, start=False)
        await bot.start()

        async def stop() -> None:
            await bot.stop()
            bot.db.dispose()

        stack.push_async_callback(stop)
        if connect:
            # Connected on both ends once a ping on the new socket has been echoed.
            await fake.wait_for(lambda: fake.connected)
            frame_id, _ = await fake.ping()
            await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
        return DingTalkBot(bot=bot, adapter=adapter, fake=fake, llm=model)

    yield make
    await stack.aclose()
