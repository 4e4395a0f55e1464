"""`huixiangdou-bot run` with Feishu configured, in a subprocess, against the fake Feishu
(served from a thread of this process): the wiring from bot.yaml to a threaded reply, in
both modes, and a clean shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.feishu.conftest import ENCRYPT_KEY, VERIFICATION_TOKEN
from tests.adapters.feishu.fake_feishu import FakeFeishu, load_event, signed_request
from tests.daemon import Daemon, daemon_config, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIDDLEWARES = "tests.adapters.feishu.middlewares"


class ThreadedFake:
    """The fake on an event loop of its own, since the test itself blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeFeishu(
            app_id=f"cli_{uuid.uuid4().hex[:16]}", app_secret="s3cr3t-" + uuid.uuid4().hex
        )
        self._running = self.fake.running()

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20)

    def start(self) -> ThreadedFake:
        self.thread.start()
        self.call(self._running.__aenter__())
        return self

    def stop(self) -> None:
        self.call(self._running.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def threaded_fake() -> Iterator[ThreadedFake]:
    fake = ThreadedFake().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("mode", ["websocket", "webhook"])
def test_daemon_answers_in_a_thread_and_stops_cleanly(
    tmp_path: Path, threaded_fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    fake = threaded_fake.fake
    monkeypatch.setenv("FEISHU_APP_SECRET", fake.app_secret)
    port = free_port()
    config = daemon_config(
        tmp_path,
        port,
        pipeline=[
            "normalize",
            f"{MIDDLEWARES}:StaticChunks",
            f"{MIDDLEWARES}:CannedAnswer",
            f"{MIDDLEWARES}:CiteAll",
        ],
        adapters={
            "playground": {"enabled": False},
            "feishu": {
                "app_id": fake.app_id,
                "app_secret": "${FEISHU_APP_SECRET}",
                "encrypt_key": ENCRYPT_KEY,
                "verification_token": VERIFICATION_TOKEN,
                "mode": mode,
                "domain": fake.url,
            },
        },
    )
    daemon = Daemon(config, port).start()
    try:
        question = load_event("text_group.json", token=VERIFICATION_TOKEN, app_id=fake.app_id)
        if mode == "websocket":
            wait_until(lambda: fake.connected)
            threaded_fake.call(fake.push_event(question))
        else:
            headers, body = signed_request(question, ENCRYPT_KEY)
            response = httpx.post(
                f"{daemon.url}/feishu/events", content=body, headers=headers, timeout=10
            )
            assert response.status_code == 200, response.text
        wait_until(lambda: len(fake.sent) == 1)
        [sent] = fake.sent
        assert sent.target == question["event"]["message"]["message_id"]
        assert sent.reply_in_thread is True
        assert "docs/en/get_started.md § Installation" in sent.text()
    finally:
        daemon.stop()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    assert daemon.process is not None and daemon.process.returncode in (0, -15)
    log = daemon.log.read_text()
    assert "Application shutdown complete" in log, log
    assert "Traceback" not in log, log
    assert fake.app_secret not in log


@pytest.mark.parametrize("right_secret", [True, False])
def test_doctor_checks_the_feishu_credentials(
    tmp_path: Path, threaded_fake: ThreadedFake, right_secret: bool
) -> None:
    from click.testing import CliRunner

    from bot.app.cli import main

    fake = threaded_fake.fake
    config = daemon_config(
        tmp_path,
        free_port(),
        adapters={
            "feishu": {
                "app_id": fake.app_id,
                "app_secret": fake.app_secret if right_secret else "wrong-secret",
                "domain": fake.url,
            }
        },
    )
    output = CliRunner().invoke(main, ["doctor", "--config", str(config)]).output
    # The playground with a real platform and no admin token: locked, and doctor says so.
    assert "warn  admin pages" in output
    assert "a real platform adapter is enabled (feishu)" in output
    if right_secret:
        assert f"ok    feishu: bot 'HuixiangDou' at {fake.url} (websocket)" in output
    else:
        assert "FAIL  feishu" in output
        assert "10014: app secret invalid" in output
        assert "wrong-secret" not in output
