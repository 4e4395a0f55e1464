"""`huixiangdou-bot llm serve` as a real process, and two bot daemons answering through it: one
model service for many workers (llm.backend: openai, with the service's scoring route)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.llm.llama_cpp import bundled_model_path
from tests.conftest import write_config
from tests.daemon import REPO, Daemon, daemon_config, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "test-serve-key"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """`llm serve` on a free port; yields its /v1 URL."""
    port = free_port()
    config = write_config(
        tmp_path,
        {"bot": {"work_dir": str(tmp_path / "serve")}, "llm": {"n_ctx": 1024, "n_threads": 1}},
        name="serve.yaml",
    )
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HUIXIANGDOU_LLM_API_KEY": API_KEY}
    command = [sys.executable, "-m", "bot", "llm", "serve", "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"llm serve exited:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, what="llm serve to load the model")
        yield f"{url}/v1"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def bot_config(directory: Path, port: int, base_url: str) -> Path:
    directory.mkdir()
    llm = {
        "backend": "openai",
        "max_tokens": 256,
        "remote": {
            "base_url": base_url,
            "api_key": API_KEY,
            "model": bundled_model_path().name,
            "max_context": 1024,
            "tokenizer": str(bundled_model_path()),
            "score_route": "/huixiangdou/score",
        },
    }
    return daemon_config(
        directory,
        port,
        llm=llm,
        pipeline=["normalize", "reject.llm", "generate"],
        middleware={"reject.llm": {"threshold": 0.0}},
    )


def test_two_bots_answer_through_one_llm_serve(tmp_path: Path, service: str) -> None:
    refused = httpx.post(f"{service}/chat/completions", json={"messages": []}, timeout=10)
    assert refused.status_code == 401  # --api-key is required

    ports = [free_port(), free_port()]
    bots = [
        Daemon(bot_config(tmp_path / name, port, service), port).start()
        for name, port in zip(("a", "b"), ports, strict=True)
    ]
    try:

        def ask(bot: Daemon) -> dict[str, Any]:
            body = {"text": "What is a config file?", "sender": "alice", "wait": True}
            response = httpx.post(f"{bot.url}/api/messages", json=body, timeout=300)
            view: dict[str, Any] = response.json()
            return view

        with ThreadPoolExecutor(2) as pool:  # at the same time
            views = list(pool.map(ask, bots))
    finally:
        for bot in bots:
            bot.stop()
    for view in views:
        assert view["status"] == "answered" and view["reply"]["text"].strip()
        steps = {step["name"]: step for step in view["trace"]}
        # The 0-10 score came from the service's probabilities, not from parsed text.
        assert steps["reject.llm"]["detail"]["question"]["method"] == "probabilities"
        assert steps["generate"]["detail"]["finish_reason"] == "stop"
