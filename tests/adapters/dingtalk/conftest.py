"""A fake DingTalk, and a real bot (core, SDK, adapter) connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.dingtalk.adapter import DingTalkAdapter
from bot.runtime import Bot
from tests.adapters.common import StoredMessages, platform_config, start_bot
from tests.adapters.dingtalk.fake_dingtalk import FakeDingTalk
from tests.contracts.adapter import ANSWER, PIPELINE
from tests.fakes import ScriptedChatModel


@dataclass
class DingTalkBot(StoredMessages):
    bot: Bot
    adapter: DingTalkAdapter
    fake: FakeDingTalk
    llm: ScriptedChatModel

    async def deliver(self, data: dict[str, Any]) -> dict[str, Any]:
        """Push a robot message over the stream and return the client's ack."""
        return await self.fake.deliver(data)

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
        fake = FakeDingTalk.fresh()
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
        config = platform_config(
            config_factory, "dingtalk", dingtalk, pipeline or PIPELINE, groups
        )
        model = llm or ScriptedChatModel(ANSWER)
        bot, adapter = await start_bot(stack, bot_factory, config, DingTalkAdapter, model)
        if connect:
            # Connected on both ends once a ping on the new socket has been echoed.
            await fake.wait_for(lambda: fake.connected)
            frame_id, _ = await fake.ping()
            await fake.wait_for(lambda: fake.ack_for(frame_id) is not None)
        return DingTalkBot(bot=bot, adapter=adapter, fake=fake, llm=model)

    yield make
    await stack.aclose()
