"""The real daemon with the bundled GGUF in its supervised process: the process is killed with
SIGKILL mid-answer, again while it loads, and in a loop; the daemon stays up, says so on
/healthz, /metrics and in doctor, and never posts half an answer."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bot.app.cli import main
from bot.storage.models import FINAL_STATUSES
from tests.daemon import Daemon, daemon_config, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# SmolLM2 answers this at length: the answer is still coming when its process is killed.
LONG_QUESTION = "Explain step by step how to install mmdetection."


def config(tmp_path: Path, port: int, **process: Any) -> Path:
    llm = {
        "max_tokens": 400,
        "n_ctx": 1024,
        "n_threads": 1,
        "process": {"restart_initial_seconds": 0.2, **process},
    }
    return daemon_config(tmp_path, port, llm=llm)


def post(daemon: Daemon, text: str) -> int:
    response = httpx.post(f"{daemon.url}/api/messages", json={"text": text}, timeout=10)
    assert response.status_code == 202, response.text
    message_id: int = response.json()["id"]
    return message_id


def finished(daemon: Daemon, message_id: int) -> dict[str, Any]:
    return wait_until(
        lambda: (view := daemon.message(message_id))["status"] in FINAL_STATUSES and view,
        what=f"message #{message_id} to finish",
    )


def model_process(daemon: Daemon) -> dict[str, Any]:
    process: dict[str, Any] = daemon.health()["model_process"]
    return process


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_killed_mid_answer_and_while_loading_the_daemon_answers_once_or_fails_clearly(
    tmp_path: Path,
) -> None:
    port = free_port()
    daemon = Daemon(config(tmp_path, port, crash_loop_crashes=10), port).start()
    try:
        first = model_process(daemon)
        assert first["state"] == "up" and first["restarts"] == 0
        message_id = post(daemon, LONG_QUESTION)
        wait_until(lambda: model_process(daemon)["busy"], what="the answer to start")
        os.kill(first["pid"], signal.SIGKILL)

        # Kill its successor while it loads (retried if the load won the race).
        killed = {first["pid"]}
        for _ in range(3):
            loading = wait_until(
                lambda: (
                    (p := model_process(daemon))["state"] == "starting"
                    and p["pid"] not in killed
                    and p
                ),
                what="a new model process to start",
            )
            os.kill(loading["pid"], signal.SIGKILL)
            killed.add(loading["pid"])
            after = wait_until(  # its successor's spawned: the crash is on record
                lambda: (p := model_process(daemon))["pid"] not in killed and p,
                what="the next restart",
            )
            if after["last_crash"].endswith("during start-up"):
                break
        assert after["last_crash"] == (
            "died of SIGKILL (killed: out of memory, or by hand) during start-up"
        )

        up = wait_until(lambda: (p := model_process(daemon))["state"] == "up" and p)
        assert up["restarts"] == len(killed) and daemon.health()["status"] == "ok"
        view = finished(daemon, message_id)
        if view["status"] == "answered":  # asked once more, answered once
            assert view["reply"]["status"] == "sent" and view["reply"]["attempts"] == 1
            assert view["reply"]["text"].strip()
            generate = next(s for s in view["trace"] if s["name"] == "generate")
            assert "died of SIGKILL" in generate["detail"]["retried_after"][0]
        else:  # or silent, and the trace says why; never half an answer
            assert view["reply"] is None
            assert "SIGKILL" in view["decision"] or view["decision"] == "ignored: truncated"

        metrics = httpx.get(f"{daemon.url}/metrics", timeout=10).text
        assert f"hxd_model_process_restarts_total {float(len(killed))}" in metrics
        assert 'hxd_model_process_crashes_total{cause="SIGKILL"}' in metrics
        assert "hxd_model_process_up 1.0" in metrics

        # The model process does not outlive a killed daemon.
        daemon.kill()
        wait_until(lambda: gone(up["pid"]), timeout=30, what="the model process to exit")
    finally:
        daemon.stop()


def test_a_crash_loop_stops_restarts_and_the_bot_answers_only_what_needs_no_model(
    tmp_path: Path,
) -> None:
    port = free_port()
    path = config(tmp_path, port, crash_loop_crashes=2)
    daemon = Daemon(path, port).start()
    try:
        os.kill(model_process(daemon)["pid"], signal.SIGKILL)
        up = wait_until(
            lambda: (p := model_process(daemon))["state"] == "up" and p["restarts"] == 1 and p
        )
        os.kill(up["pid"], signal.SIGKILL)
        failed = wait_until(lambda: (p := model_process(daemon))["state"] == "failed" and p)
        assert failed["recent_crashes"] == 2 and daemon.health()["status"] == "degraded"

        needs_model = finished(daemon, post(daemon, "How do I install mmdetection?"))
        assert needs_model["status"] == "failed" and needs_model["reply"] is None
        assert "is not restarted" in needs_model["decision"]
        no_model = finished(daemon, post(daemon, "  @bot  "))
        assert (no_model["status"], no_model["decision"]) == ("ignored", "ignored: empty")

        assert "crashes within 60s: not restarting it" in daemon.log.read_text()
        doctor = CliRunner().invoke(main, ["doctor", "--config", str(path)])
        assert "FAIL  running bot's model process: failed" in doctor.output
        assert doctor.exit_code == 1
    finally:
        daemon.stop()
