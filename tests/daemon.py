"""Run the real `huixiangdou-bot run` daemon in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float = 120, what: str = "") -> T:
    """Poll ``probe`` (a running process's HTTP API: nothing to wait on but its answers) until
    it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# With a real platform enabled, the admin pages (the playground's API, which the daemon tests
# read messages' status from) need a token (bot/app/console/auth.py).
ADMIN_TOKEN = "test-admin-token-8d2f6b1a9c"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def daemon_config(
    directory: Path, port: int, *, admin_token: bool = False, **sections: Any
) -> Path:
    server: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if admin_token:
        server["admin_token"] = ADMIN_TOKEN
    data: dict[str, Any] = {
        "bot": {"work_dir": str(directory / "work")},
        "server": server,
        "queue": {"debounce_seconds": 0},
        # Room for the bundled model's short answers: one cut at max_tokens is not posted.
        "llm": {"max_tokens": 256, "n_ctx": 1024, "n_threads": 1},
        "logging": {"level": "INFO"},
    }
    data.update(sections)
    return write_config(directory, data, name=f"bot-{port}-{len(sections)}.yaml")


class Daemon:
    """`huixiangdou-bot db upgrade` + `run` with a given bot.yaml; stopped by the test."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.log = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bot", *args, "--config", str(self.config)]

    def start(self, timeout: float = 60) -> Daemon:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(
            self._command("db", "upgrade"), cwd=REPO, env=env, check=True, capture_output=True
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command("run"), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"daemon did not become healthy:\n{self.log.read_text()}")

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=10).json()
        return health

    def message(self, message_id: int) -> dict[str, Any]:
        view: dict[str, Any] = httpx.get(
            f"{self.url}/api/messages/{message_id}", timeout=10
        ).json()
        return view

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
