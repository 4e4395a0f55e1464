"""A fake WeCom, and a real bot (core, wechatpy, adapter) connected to it: one self-built app,
one AI bot, and a group robot in one of the AI bot's groups."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.wecom.adapter import WeComAdapter
from bot.runtime import Bot
from tests.adapters.common import StoredMessages, platform_config, serve, start_bot
from tests.adapters.middlewares import PIPELINE
from tests.adapters.wecom.fake_wecom import (
    FakeWeCom,
    Keys,
    app_callback,
    bot_callback,
    msg_id,
    random_aes_key,
    text_xml,
)
from tests.fakes import ScriptedChatModel

ANSWER = "先安装与 CUDA 12 匹配的 mmcv 预编译包，再 pip install mmdet。"
USER = "zhangsan"
ROBOT_CHAT = "wrkSFfCgAAtestchat0001"  # a group with the AI bot and a group robot
OTHER_CHAT = "wrkSFfCgAAtestchat0002"  # a group with the AI bot only
APP_CHAT = "appchat0001"  # a group chat created by the app


def alnum(n: int) -> str:
    return os.urandom(n).hex()[:n]


@dataclass
class WeComBot(StoredMessages):
    bot: Bot
    adapter: WeComAdapter
    fake: FakeWeCom
    llm: ScriptedChatModel
    app_keys: Keys
    bot_keys: Keys
    robot_key: str
    server: str = ""
    ops_keys: Keys | None = None  # a second app, "ops", when asked for

    @property
    def app_url(self) -> str:
        return f"{self.server}/wecom/docs"

    @property
    def bot_url(self) -> str:
        return f"{self.server}/wecom/helper"

    def question_xml(
        self, text: str, message_id: str | None = None, *, chat_id: str = "", user: str = USER
    ) -> str:
        return text_xml(
            self.fake.corp_id,
            user,
            text,
            message_id or msg_id(),
            agent_id=self.fake.agent_id,
            chat_id=chat_id,
        )

    def bot_payload(
        self, text: str, message_id: str | None = None, *, chat_id: str = "", user: str = USER
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "msgid": message_id or f"CAIQ{alnum(16)}",
            "aibotid": "aibot-helper",
            "chattype": "group" if chat_id else "single",
            "from": {"userid": user},
            "response_url": self.fake.response_url(),
            "msgtype": "text",
            "text": {"content": f"@小助手 {text}" if chat_id else text},
        }
        if chat_id:
            payload["chatid"] = chat_id
        return payload

    async def post_app(self, xml: str, **signing: Any) -> httpx.Response:
        """Deliver an app callback the way WeCom does: encrypted XML, signed in the query."""
        query, body = app_callback(self.app_keys, xml, **signing)
        return await self.post_raw(self.app_url, query, body)

    async def post_bot(self, payload: dict[str, Any], **signing: Any) -> httpx.Response:
        query, body = bot_callback(self.bot_keys, payload, **signing)
        return await self.post_raw(self.bot_url, query, body)

    async def post_raw(self, url: str, query: dict[str, str], body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, params=query, content=body)

    async def get(self, url: str, query: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(url, params=query)


MakeWeComBot = Callable[..., Awaitable[WeComBot]]


def wecom_section(fake: FakeWeCom, app_keys: Keys, bot_keys: Keys, robot_key: str) -> dict:
    """adapters.wecom as an admin writes it, secrets from the environment."""
    return {
        "api_base_url": fake.url,
        "apps": [
            {
                "name": "docs",
                "corp_id": fake.corp_id,
                "agent_id": fake.agent_id,
                "secret": "${WECOM_DOCS_SECRET}",
                "token": app_keys.token,
                "encoding_aes_key": app_keys.encoding_aes_key,
            }
        ],
        "bots": [
            {
                "name": "helper",
                "token": bot_keys.token,
                "encoding_aes_key": bot_keys.encoding_aes_key,
            }
        ],
        "group_robots": [{"chat_id": ROBOT_CHAT, "key": robot_key}],
    }


def make_fake(**options: Any) -> tuple[FakeWeCom, Keys, Keys, str]:
    robot_key = f"robot-{alnum(12)}"
    fake = FakeWeCom(
        corp_id=f"ww{alnum(16)}",
        secret=f"s3cr3t-{alnum(24)}",
        robot_keys={robot_key},
        **options,
    )
    app_keys = Keys(alnum(32), random_aes_key(), fake.corp_id)
    bot_keys = Keys(alnum(24), random_aes_key(), "")
    return fake, app_keys, bot_keys, robot_key


@pytest.fixture
async def wecom_bot(
    bot_factory: Callable[..., Any],
    config_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MakeWeComBot]:
    """Start a fake WeCom and a bot with the WeCom adapter pointed at it, its callback routes
    served on 127.0.0.1. Shut down in order: callback server, bot, fake."""
    stack = contextlib.AsyncExitStack()

    async def make(
        *,
        llm: ScriptedChatModel | None = None,
        pipeline: list[str] | None = None,
        groups: dict[str, Any] | None = None,
        fake_options: dict[str, Any] | None = None,
        second_app: bool = False,
        app: dict[str, Any] | None = None,
        robot: dict[str, Any] | None = None,
        **settings: Any,
    ) -> WeComBot:
        """``app`` and ``robot`` change keys of the docs app and the group robot; other
        keyword arguments are keys of adapters.wecom."""
        fake, app_keys, bot_keys, robot_key = make_fake(**(fake_options or {}))
        await stack.enter_async_context(fake.running())
        monkeypatch.setenv("WECOM_DOCS_SECRET", fake.secret)
        section = {**wecom_section(fake, app_keys, bot_keys, robot_key), **settings}
        section["apps"][0].update(app or {})
        section["group_robots"][0].update(robot or {})
        ops_keys = None
        if second_app:
            ops_keys = Keys(alnum(32), random_aes_key(), fake.corp_id)
            fake.other_apps["ops-" + fake.secret] = 1000003
            section["apps"] = [
                *section["apps"],
                {
                    "name": "ops",
                    "corp_id": fake.corp_id,
                    "agent_id": 1000003,
                    "secret": "ops-" + fake.secret,
                    "token": ops_keys.token,
                    "encoding_aes_key": ops_keys.encoding_aes_key,
                    "callback_path": "/callbacks/ops",
                    "message_format": "markdown",
                },
            ]
        config = platform_config(config_factory, "wecom", section, pipeline or PIPELINE, groups)
        model = llm or ScriptedChatModel(ANSWER)
        bot, adapter = await start_bot(stack, bot_factory, config, WeComAdapter, model)
        port = await stack.enter_async_context(serve(Starlette(routes=adapter.routes)))
        return WeComBot(
            bot=bot,
            adapter=adapter,
            fake=fake,
            llm=model,
            app_keys=app_keys,
            bot_keys=bot_keys,
            robot_key=robot_key,
            server=f"http://127.0.0.1:{port}",
            ops_keys=ops_keys,
        )

    yield make
    await stack.aclose()


def now() -> int:
    return int(time.time())
