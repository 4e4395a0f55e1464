"""Who may use the admin pages (the console and the playground's API), by the one check in
bot/app/console/auth.py: a token whenever one is configured; without one, this machine only
when nothing makes a token necessary, and nobody (locked) when listening beyond loopback or a
real platform is enabled; served apart on server.admin_port when asked. /healthz and /metrics
stay open. (The console's own login, cookie and cross-site rules: tests/console/test_pages.py.)"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from bot.adapter import build_adapters
from bot.app.console.auth import AdminAccess
from bot.app.server import create_app
from bot.app.services import build_services
from bot.config import Config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.daemon import Daemon, daemon_config, free_port
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration

TOKEN = "adm-1b9d3f5a7c2e4f6a8b0c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ELSEWHERE = ("203.0.113.7", 40123)  # a client beyond this machine
LOOPBACK = ("127.0.0.1", 5000)
MESSAGE = {"text": "How do I install mmdet?", "sender": "alice"}
FEISHU = {"app_id": "cli_admin_test", "app_secret": "s3cr3t-app", "mode": "websocket"}


def client(app: Any, *, port: int = 8765, origin: tuple[str, int] = ELSEWHERE) -> Any:
    transport = httpx.ASGITransport(app=app, client=origin)
    return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def make_bot(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> Callable[..., Any]:
    async def make(**sections: Any) -> Bot:
        config = config_factory(sections)
        bot: Bot = await bot_factory(config, build_adapters(config), start=False)
        await bot.start(recover=False)
        return bot

    return make


async def test_without_a_token_this_machine_gets_in_and_no_other(make_bot: Any) -> None:
    bot = await make_bot()
    app = create_app(bot)
    async with client(app, origin=LOOPBACK) as local:
        assert (await local.post("/api/messages", json=MESSAGE)).status_code == 202
        assert (await local.get("/console/log")).status_code == 200
    async with client(app) as remote:
        assert (await remote.post("/api/messages", json=MESSAGE)).status_code == 403
        assert (await remote.get("/api/messages/1")).status_code == 403
    await bot.stop()


async def test_a_configured_token_is_required_from_anywhere(make_bot: Any) -> None:
    bot = await make_bot(server={"admin_token": TOKEN})
    app = create_app(bot)
    async with client(app) as http:
        assert (await http.get("/api/messages/1")).status_code == 401
        for wrong in ("Bearer nope", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}", TOKEN):
            answer = await http.post(
                "/api/messages", json=MESSAGE, headers={"Authorization": wrong}
            )
            assert answer.status_code == 401, wrong
        posted = await http.post("/api/messages", json=MESSAGE, headers=AUTH)
        assert posted.status_code == 202
        assert (await http.get("/console/log", headers=AUTH)).status_code == 200
        # Open to all, and saying nothing secret.
        for path in ("/healthz", "/metrics"):
            open_route = await http.get(path)
            assert open_route.status_code == 200 and TOKEN not in open_route.text
    async with client(app, origin=LOOPBACK) as local:
        assert (await local.get("/api/messages/1")).status_code == 401  # counts everywhere
    await bot.stop()


def test_listening_beyond_loopback_without_a_token_locks_the_admin_pages(
    config_factory: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's app with its lifespan: it starts, warns, and refuses the admin pages,
    even to this machine."""
    config = config_factory({"server": {"host": "0.0.0.0"}})
    database = Database(config.database_url, config.database)
    database.upgrade()
    bot = Bot(build_services(config, llm=ScriptedChatModel()), database, build_adapters(config))
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(bot), client=LOOPBACK) as http:
        refused = http.post("/api/messages", json=MESSAGE)
        assert refused.status_code == 403 and "server.admin_token" in refused.text
        assert http.get("/console/log").status_code == 403
        assert http.get("/healthz").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "locked" in r.getMessage()]
    assert any("they listen on 0.0.0.0" in line for line in warnings), warnings
    database.dispose()


async def test_a_real_platform_without_a_token_locks_the_admin_pages(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    config = config_factory({"adapters": {"feishu": FEISHU}})
    adapters = build_adapters(config)
    access = AdminAccess.decide(config.server, adapters)
    assert "a real platform adapter is enabled (feishu)" in access.locked
    bot = await bot_factory(config, adapters, start=False)  # not connecting to Feishu
    async with client(create_app(bot), origin=LOOPBACK) as local:
        # Even from this machine: a reverse proxy in front of a webhook looks local too.
        assert (await local.get("/api/messages/1")).status_code == 403
        assert (await local.get("/console/log")).status_code == 403
    bot.db.dispose()


async def test_the_admin_port_serves_the_admin_pages_apart(make_bot: Any) -> None:
    bot = await make_bot(server={"admin_port": 8766, "admin_token": TOKEN})
    app = create_app(bot)
    async with client(app, port=8765) as public, client(app, port=8766) as admin:
        assert (await public.get("/console/log", headers=AUTH)).status_code == 404
        assert (await public.post("/api/messages", json=MESSAGE, headers=AUTH)).status_code == 404
        assert (await public.get("/healthz")).status_code == 200
        assert (await admin.get("/console/log", headers=AUTH)).status_code == 200
        assert (await admin.post("/api/messages", json=MESSAGE, headers=AUTH)).status_code == 202
    await bot.stop()


@pytest.fixture
def daemon_with_admin_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    port, admin_port = free_port(), free_port()
    monkeypatch.setenv("HUIXIANGDOU_ADMIN_TOKEN", TOKEN)
    config = daemon_config(
        tmp_path,
        port,
        server={
            "host": "127.0.0.1",
            "port": port,
            "admin_port": admin_port,
            "admin_token": "${HUIXIANGDOU_ADMIN_TOKEN}",
        },
        pipeline=["tests.plugins:StaySilent"],
    )
    daemon = Daemon(config, port).start()
    yield daemon, f"http://127.0.0.1:{admin_port}"
    daemon.stop()


@pytest.mark.slow
def test_a_daemon_with_an_admin_port(daemon_with_admin_port: Any) -> None:
    daemon, admin_url = daemon_with_admin_port
    assert httpx.get(f"{daemon.url}/console/log", headers=AUTH, timeout=10).status_code == 404
    assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{admin_url}/console/log", timeout=10).status_code == 401
    assert httpx.get(f"{admin_url}/console/log", headers=AUTH, timeout=10).status_code == 200
    posted = httpx.post(f"{admin_url}/api/messages", json=MESSAGE, headers=AUTH, timeout=10)
    assert posted.status_code == 202
    assert TOKEN not in daemon.log.read_text()
