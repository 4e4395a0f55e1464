"""What the platforms' fakes and harnesses share (Feishu, DingTalk, WeCom): serving an app on
127.0.0.1, a fake's condition to wait on, a real bot with one platform adapter, the stored
messages as `huixiangdou-bot trace` shows them, and a fake on a thread of its own for the
daemon tests (where the test itself blocks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Self, TypeVar

import httpx
import uvicorn
import yaml
from sqlalchemy import select
from starlette.applications import Starlette

from bot.adapter import Adapter, build_adapters
from bot.config import Config
from bot.llm.protocol import ChatModel
from bot.runtime import Bot
from bot.storage import repo
from bot.storage.models import MessageRecord
from tests.daemon import ADMIN, REPO, Daemon

A = TypeVar("A", bound=Adapter)


def bot_yaml_example(name: str) -> dict[str, Any]:
    """The commented-out example of adapter ``name`` under `adapters:` in bot.yaml,
    uncommented."""
    lines = (REPO / "bot.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"  # {name}:")
    block = [f"{name}:"]
    for line in lines[start + 1 :]:
        if not line.startswith("  #   "):
            break
        block.append(line[len("  # ") :])
    example: dict[str, Any] = yaml.safe_load("\n".join(block))[name]
    return example


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 and a free port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


class FakeServer:
    """A fake platform's server side: its Starlette ``app`` served on ``port``, and a condition
    the fake notifies whenever it records something, for tests to wait on. The fake creates
    ``app`` and ``_changed`` (an ``asyncio.Condition``) itself."""

    app: Starlette
    port: int
    _changed: asyncio.Condition

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        async with serve(self.app) as port:
            self.port = port
            yield self

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], within: float = 20) -> None:
        """Wait until ``predicate()`` holds (the bot's threads and the fake move on their own);
        at most ``within`` seconds."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


async def start_bot(
    stack: contextlib.AsyncExitStack,
    bot_factory: Callable[..., Any],
    config: Config,
    kind: type[A],
    llm: ChatModel,
    **options: Any,
) -> tuple[Bot, A]:
    """A started bot whose one adapter (``kind``) is the platform's, stopped (its SDK threads
    too) when ``stack`` closes: before the fake that was entered on the stack earlier."""
    adapters = build_adapters(config)
    assert [a.name for a in adapters] == [kind.name]
    adapter = adapters[0]
    assert isinstance(adapter, kind)
    bot = await bot_factory(config, adapters, llm=llm, start=False, **options)
    await bot.start()

    async def stop() -> None:
        await bot.stop()
        bot.db.dispose()

    stack.push_async_callback(stop)
    return bot, adapter


def platform_config(
    config_factory: Callable[..., Config],
    name: str,
    section: dict[str, Any],
    pipeline: list[str],
    groups: dict[str, Any] | None = None,
    **sections: Any,
) -> Config:
    """bot.yaml with the one platform adapter ``name`` enabled (the playground off)."""
    return config_factory(
        {
            "adapters": {"playground": {"enabled": False}, name: section},
            "pipeline": pipeline,
            "groups": groups or {},
            **sections,
        }
    )


class StoredMessages:
    """A harness's reads of what its ``bot`` stored."""

    bot: Bot

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


F = TypeVar("F", bound=FakeServer)


class ThreadedFake(Generic[F]):
    """A fake on an event loop of its own, for daemon tests: the test itself blocks. Served
    while in its ``with`` block."""

    def __init__(self, fake: F) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._running = fake.running()

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60) -> None:
        """Wait until ``predicate()`` holds of the fake."""
        self.call(self.fake.wait_for(predicate, within=timeout), timeout + 5)

    def __enter__(self) -> Self:
        self.thread.start()
        self.call(self._running.__aenter__())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call(self._running.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def message_status(daemon: Daemon, message_id: int) -> str:
    """A stored message's status from the daemon's admin API; "" while there is none."""
    response = httpx.get(f"{daemon.url}/api/messages/{message_id}", headers=ADMIN, timeout=10)
    return str(response.json().get("status")) if response.status_code == 200 else ""


def assert_stopped_cleanly(daemon: Daemon) -> str:
    """The daemon shut down on SIGTERM without a traceback; returns its log."""
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    assert daemon.process is not None and daemon.process.returncode in (0, -15)
    log = daemon.log.read_text()
    assert "Application shutdown complete" in log, log
    assert "Traceback" not in log, log
    return log
