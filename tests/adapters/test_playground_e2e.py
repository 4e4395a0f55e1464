"""The playground API of a running daemon, end to end, with the bundled GGUF model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import Daemon, daemon_config, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    running = Daemon(daemon_config(tmp_path, port), port).start()
    yield running
    running.stop()


def test_message_in_reply_and_trace_out(daemon: Daemon) -> None:
    response = httpx.post(
        f"{daemon.url}/api/messages",
        json={"text": "What is a config file?", "sender": "alice", "wait": True},
        timeout=120,
    )
    assert response.status_code == 200
    view = response.json()
    assert view["status"] == "answered"
    assert view["decision"] == "answered"
    assert view["reply"]["text"].strip()
    steps = {step["name"]: step for step in view["trace"]}
    assert list(steps) == ["normalize", "generate", "send"]
    # The model's own count and finish reason (an answer cut at max_tokens is not posted).
    generate = steps["generate"]["detail"]
    assert generate["finish_reason"] == "stop" and 0 < generate["completion_tokens"] < 256
    assert steps["generate"]["ms"] > 0

    again = httpx.get(f"{daemon.url}/api/messages/{view['id']}", timeout=10).json()
    assert again["reply"]["text"] == view["reply"]["text"]


def test_same_platform_message_id_twice_gives_one_reply(daemon: Daemon) -> None:
    body = {"text": "What is a config file?", "sender": "bob", "message_id": "dup-1"}
    first = httpx.post(f"{daemon.url}/api/messages", json={**body, "wait": True}, timeout=120)
    second = httpx.post(f"{daemon.url}/api/messages", json={**body, "wait": True}, timeout=120)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert second.json()["id"] == first.json()["id"]
    metrics = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    assert 'hxd_messages_received_total{duplicate="true",platform="playground"} 1.0' in metrics
    assert 'hxd_send_attempts_total{platform="playground",result="ok"} 1.0' in metrics


def test_silence_and_bad_input(daemon: Daemon) -> None:
    empty = httpx.post(
        f"{daemon.url}/api/messages", json={"text": "  @bot  ", "wait": True}, timeout=60
    ).json()
    assert (empty["status"], empty["decision"]) == ("ignored", "ignored: empty")
    assert empty["reply"] is None

    malformed = httpx.post(
        f"{daemon.url}/api/messages",
        content=b"{not json",
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    missing = httpx.post(f"{daemon.url}/api/messages", json={"sender": "x"}, timeout=10)
    assert missing.status_code == 422
    assert missing.json()["details"][0]["field"] == "text"
    assert httpx.get(f"{daemon.url}/api/messages/999999", timeout=10).status_code == 404


def test_crash_between_persist_and_reply_is_resumed_on_restart(tmp_path: Path) -> None:
    port = free_port()
    hanging = daemon_config(
        tmp_path,
        port,
        pipeline=["normalize", "tests.plugins:Sleep", "generate"],
        middleware={"sleep": {"seconds": 600}},
    )
    first = Daemon(hanging, port).start()
    try:
        posted = httpx.post(
            f"{first.url}/api/messages", json={"text": "Where are the docs?"}, timeout=10
        )
        assert posted.status_code == 202
        message_id = posted.json()["id"]
        for _ in range(100):
            view = httpx.get(f"{first.url}/api/messages/{message_id}", timeout=10).json()
            if view["status"] == "processing":
                break
            time.sleep(0.1)
        assert view["status"] == "processing"
    finally:
        first.kill()

    second = Daemon(daemon_config(tmp_path, port), port).start()
    try:
        for _ in range(600):
            view = httpx.get(f"{second.url}/api/messages/{message_id}", timeout=10).json()
            if view["status"] == "answered":
                break
            time.sleep(0.1)
        assert view["status"] == "answered"
        assert view["reply"]["text"].strip()
    finally:
        second.stop()
