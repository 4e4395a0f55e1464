"""A fake Feishu, and a real bot (core, SDK, adapter) connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.feishu.adapter import FeishuAdapter
from bot.runtime import Bot
from tests.adapters.common import StoredMessages, platform_config, serve, start_bot
from tests.adapters.feishu.fake_feishu import FakeFeishu, signed_request
from tests.adapters.middlewares import PIPELINE
from tests.fakes import ScriptedChatModel

ENCRYPT_KEY = "kF3dL9xQ2mZ7pW1v"
VERIFICATION_TOKEN = "vT8uYh4RkE2sNq6c"
ANSWER = "Install mmcv from the wheel index that matches CUDA 12, then pip install mmdet."


@dataclass
class FeishuBot(StoredMessages):
    bot: Bot
    adapter: FeishuAdapter
    fake: FakeFeishu
    llm: ScriptedChatModel
    webhook_url: str = ""

    async def post(self, event: dict[str, Any], **signing: Any) -> httpx.Response:
        """Deliver an event the way Feishu does in webhook mode: encrypted and signed."""
        encrypt_key = signing.pop("encrypt_key", ENCRYPT_KEY)
        headers, body = signed_request(event, encrypt_key, **signing)
        return await self.post_raw(body, headers)

    async def post_raw(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.webhook_url, content=body, headers=headers)


MakeFeishuBot = Callable[..., Awaitable[FeishuBot]]


def feishu_section(fake: FakeFeishu, mode: str, **settings: Any) -> dict[str, Any]:
    """adapters.feishu as an admin writes it, the app secret from the environment."""
    return {
        "app_id": fake.app_id,
        "app_secret": "${FEISHU_APP_SECRET}",
        "encrypt_key": ENCRYPT_KEY,
        "verification_token": VERIFICATION_TOKEN,
        "mode": mode,
        "domain": fake.url,
        **settings,
    }


@pytest.fixture
async def feishu_bot(
    bot_factory: Callable[..., Any],
    config_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MakeFeishuBot]:
    """Start a fake Feishu and a bot with the Feishu adapter pointed at it.

    Shut down in order: webhook server, bot (its websocket thread), then the fake.
    """
    stack = contextlib.AsyncExitStack()

    async def make(
        mode: str = "webhook",
        *,
        llm: ScriptedChatModel | None = None,
        pipeline: list[str] | None = None,
        groups: dict[str, Any] | None = None,
        fake_options: dict[str, Any] | None = None,
        sections: dict[str, Any] | None = None,
        clock: Any = None,
        **settings: Any,
    ) -> FeishuBot:
        fake = FakeFeishu.fresh(**(fake_options or {}))
        await stack.enter_async_context(fake.running())
        monkeypatch.setenv("FEISHU_APP_SECRET", fake.app_secret)
        section = feishu_section(fake, mode, **settings)
        config = platform_config(
            config_factory, "feishu", section, pipeline or PIPELINE, groups, **(sections or {})
        )
        model = llm or ScriptedChatModel(ANSWER)
        bot, adapter = await start_bot(
            stack, bot_factory, config, FeishuAdapter, model, clock=clock
        )
        harness = FeishuBot(bot=bot, adapter=adapter, fake=fake, llm=model)
        if mode == "webhook":
            port = await stack.enter_async_context(serve(Starlette(routes=adapter.routes)))
            harness.webhook_url = f"http://127.0.0.1:{port}{adapter.settings.webhook_path}"
        return harness

    yield make
    await stack.aclose()
