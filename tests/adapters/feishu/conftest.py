"""A fake Feishu, and a real bot (core, SDK, adapter) connected to it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from adapters.feishu.adapter import FeishuAdapter
from bot.adapter import build_adapters
from bot.llm.protocol import ChatMessage, Completion
from bot.runtime import Bot
from bot.storage import repo
from bot.storage.models import MessageRecord
from tests.adapters.feishu.fake_feishu import FakeFeishu, serve, signed_request
from tests.fakes import ScriptedChatModel

ENCRYPT_KEY = "kF3dL9xQ2mZ7pW1v"
VERIFICATION_TOKEN = "vT8uYh4RkE2sNq6c"
PIPELINE = [
    "normalize",
    "tests.adapters.feishu.middlewares:QuestionsOnly",
    "tests.adapters.feishu.middlewares:StaticChunks",
    "generate",
    "tests.adapters.feishu.middlewares:CiteAll",
]
ANSWER = "Install mmcv from the wheel index that matches CUDA 12, then pip install mmdet."


class GatedChatModel(ScriptedChatModel):
    """A slow model whose answer waits until the test opens the gate."""

    def __init__(self, script: Any = ANSWER) -> None:
        super().__init__(script)
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def complete(self, messages: list[ChatMessage], **kwargs: Any) -> Completion:
        self.started.set()
        await self.gate.wait()
        return await super().complete(messages, **kwargs)


@dataclass
class FeishuBot:
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

    async def raw(self, message_id: int) -> dict[str, Any]:
        message = await self.bot.db.run(repo.load_message, message_id)
        return message.raw


MakeFeishuBot = Callable[..., Awaitable[FeishuBot]]


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
        # The SDK caches tenant tokens process-wide by app id: a fresh app id per bot.
        fake = FakeFeishu(
            app_id=f"cli_{uuid.uuid4().hex[:16]}",
            app_secret="s3cr3t-" + uuid.uuid4().hex,
            **(fake_options or {}),
        )
        await stack.enter_async_context(fake.running())
        monkeypatch.setenv("FEISHU_APP_SECRET", fake.app_secret)
        feishu: dict[str, Any] = {
            "app_id": fake.app_id,
            "app_secret": "${FEISHU_APP_SECRET}",
            "encrypt_key": ENCRYPT_KEY,
            "verification_token": VERIFICATION_TOKEN,
            "mode": mode,
            "domain": fake.url,
            **settings,
        }
        config = config_factory(
            {
                "adapters": {"playground": {"enabled": False}, "feishu": feishu},
                "pipeline": pipeline or PIPELINE,
                "groups": groups or {},
                **(sections or {}),
            }
        )
        adapters = build_adapters(config)
        assert [a.name for a in adapters] == ["feishu"]
        adapter = adapters[0]
        assert isinstance(adapter, FeishuAdapter)
        model = llm or ScriptedChatModel(ANSWER)
        bot = await bot_factory(config, adapters, llm=model, start=False, clock=clock)
        await bot.start()

        async def stop() -> None:
            await bot.stop()
            bot.db.dispose()

        stack.push_async_callback(stop)
        harness = FeishuBot(bot=bot, adapter=adapter, fake=fake, llm=model)
        if mode == "webhook":
            from starlette.applications import Starlette

            port = await stack.enter_async_context(serve(Starlette(routes=adapter.routes)))
            harness.webhook_url = f"http://127.0.0.1:{port}{adapter.settings.webhook_path}"
        return harness

    yield make
    await stack.aclose()
