"""Shared fixtures. Every test runs with the network closed beyond 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.adapter import Adapter
from bot.app.services import build_services
from bot.config import Config, load_config
from bot.llm.protocol import ChatModel
from bot.runtime import Bot
from bot.storage.db import Database
from tests.fakes import ScriptedChatModel

LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", ""}


def _is_local(address: Any) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:  # AF_UNIX paths and the like
        return True
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection (or name lookup) outside loopback: tests must not need the internet."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(address: Any) -> None:
        if not _is_local(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")

    def connect(self: socket.socket, address: Any) -> Any:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_local((name,)) and name not in LOCAL_NAMES:
            raise RuntimeError(f"test tried to resolve a network host: {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def write_config(directory: Path, data: dict[str, Any], name: str = "bot.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@contextmanager
def write_lock(config: Config) -> Iterator[None]:
    """Another connection holds SQLite's write lock (as a CLI command or a backup might)."""
    path = make_url(config.database_url).database
    assert path
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("COMMIT")
        connection.close()


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    """Load a bot.yaml written from a dict, with a private work dir and no debounce."""

    def make(data: dict[str, Any] | None = None) -> Config:
        merged: dict[str, Any] = {
            "bot": {"work_dir": str(tmp_path / "work")},
            "queue": {"debounce_seconds": 0},
            "outbox": {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05},
        }
        for key, value in (data or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return load_config(write_config(tmp_path, merged))

    return make


@pytest.fixture
async def bot_factory() -> AsyncIterator[Callable[..., Any]]:
    """Build and start a Bot on a migrated SQLite database; stopped after the test."""
    started: list[Bot] = []

    async def make(
        config: Config,
        adapters: list[Adapter],
        llm: ChatModel | None = None,
        *,
        start: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> Bot:
        database = Database(config.database_url, config.database)
        database.upgrade()
        services = build_services(config, llm=llm or ScriptedChatModel())
        if clock is not None:
            services.clock = clock
        bot = Bot(services, database, adapters)
        if start:
            await bot.start()
            started.append(bot)
        return bot

    yield make
    for bot in started:
        await bot.stop()
        bot.db.dispose()
