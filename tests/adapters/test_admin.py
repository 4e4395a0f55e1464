"""Who may use the playground (the admin pages): open on loopback with only simulated
platforms, a token when it is configured, locked when a token is needed and none is set, and
served apart on server.admin_port when asked. /healthz and /metrics stay open."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from bot.adapter import build_adapters
from bot.app.admin import AdminAccess, presented_token
from bot.app.server import create_app
from bot.app.services import build_services
from bot.config import Config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.daemon import Daemon, daemon_config, free_port
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration

TOKEN = "adm-1b9d3f5a7c2e4f6a8b0c"
ELSEWHERE = ("203.0.113.7", 40123)  # a client beyond this machine
MESSAGE = {"text": "How do I install mmdet?", "sender": "alice"}
FEISHU = {"app_id": "cli_admin_test", "app_secret": "s3cr3t-app", "mode": "websocket"}


def client(app: Any, *, port: int = 8765, origin: tuple[str, int] = ELSEWHERE) -> Any:
    transport = httpx.ASGITransport(app=app, client=origin)
    return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}")


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()


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


async def test_open_on_loopback_with_only_the_playground(make_bot: Any) -> None:
    bot = await make_bot()
    async with client(create_app(bot), origin=("127.0.0.1", 5000)) as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.post("/api/messages", json=MESSAGE)).status_code == 202
    await bot.stop()


async def test_a_configured_token_is_required_from_anywhere(make_bot: Any) -> None:
    bot = await make_bot(server={"admin_token": TOKEN})
    app = create_app(bot)
    async with client(app) as http:
        refused = await http.get("/api/messages/1")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert refused.json() == {"code": 401, "msg": "refused"}
        for wrong in ("Bearer nope", f"Bearer {TOKEN[:-1]}", basic("nope"), f"Token {TOKEN}"):
            answer = await http.post(
                "/api/messages", json=MESSAGE, headers={"Authorization": wrong}
            )
            assert answer.status_code == 401, wrong
        posted = await http.post(
            "/api/messages", json=MESSAGE, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert posted.status_code == 202
        page = await http.get("/", headers={"Authorization": basic(TOKEN)})  # a browser
        assert page.status_code == 200
        # Open to all, and saying nothing secret.
        for path in ("/healthz", "/metrics"):
            open_route = await http.get(path)
            assert open_route.status_code == 200 and TOKEN not in open_route.text
    async with client(app, origin=("127.0.0.1", 5000)) as local:
        assert (await local.get("/")).status_code == 401  # a set token counts everywhere
    await bot.stop()


def test_listening_beyond_loopback_without_a_token_locks_the_admin_pages(
    config_factory: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's app with its lifespan: it starts, warns, and refuses the admin pages."""
    config = config_factory({"server": {"host": "0.0.0.0"}})
    database = Database(config.database_url, config.database)
    database.upgrade()
    bot = Bot(build_services(config, llm=ScriptedChatModel()), database, build_adapters(config))
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(bot), client=ELSEWHERE) as http:
        page = http.get("/")
        assert page.status_code == 403
        assert "server.admin_token" in page.json()["msg"]
        assert http.post("/api/messages", json=MESSAGE).status_code == 403
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
    async with client(create_app(bot), origin=("127.0.0.1", 5000)) as local:
        # Even from this machine: a reverse proxy in front of a webhook looks local too.
        assert (await local.get("/")).status_code == 403
        assert (await local.get("/api/messages/1")).status_code == 403
    bot.db.dispose()


async def test_the_admin_port_serves_the_playground_apart(make_bot: Any) -> None:
    bot = await make_bot(server={"admin_port": 8766})
    app = create_app(bot)
    async with client(app, port=8765) as public, client(app, port=8766) as admin:
        assert (await public.get("/")).status_code == 404
        assert (await public.post("/api/messages", json=MESSAGE)).status_code == 404
        assert (await public.get("/healthz")).status_code == 200
        assert (await admin.get("/")).status_code == 200
        assert (await admin.post("/api/messages", json=MESSAGE)).status_code == 202
    await bot.stop()


def test_presented_tokens() -> None:
    assert presented_token(f"Bearer {TOKEN}") == TOKEN
    assert presented_token(f"bearer  {TOKEN} ") == TOKEN
    assert presented_token(basic(TOKEN)) == TOKEN
    assert presented_token("Basic !!!not-base64") == ""
    assert presented_token("Basic " + base64.b64encode(b"\xff\xfe").decode()) == ""
    assert presented_token(TOKEN) == ""


@pytest.fixture
def daemon_with_admin_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    port, admin_port = free_port(), free_port()
    monkeypatch.setenv("HXD_ADMIN_TOKEN", TOKEN)
    config = daemon_config(
        tmp_path,
        port,
        server={
            "host": "127.0.0.1",
            "port": port,
            "admin_port": admin_port,
            "admin_token": "${HXD_ADMIN_TOKEN}",
        },
        pipeline=["tests.plugins:StaySilent"],
    )
    daemon = Daemon(config, port).start()
    yield daemon, f"http://127.0.0.1:{admin_port}"
    daemon.stop()


@pytest.mark.slow
def test_a_daemon_with_an_admin_port(daemon_with_admin_port: Any) -> None:
    daemon, admin_url = daemon_with_admin_port
    assert httpx.get(f"{daemon.url}/", timeout=10).status_code == 404
    assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{admin_url}/", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{admin_url}/", headers=auth, timeout=10).status_code == 200
    posted = httpx.post(f"{admin_url}/api/messages", json=MESSAGE, headers=auth, timeout=10)
    assert posted.status_code == 202
    assert TOKEN not in daemon.log.read_text()
