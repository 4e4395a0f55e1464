"""`huixiangdou-bot doctor` prints the planner's decision and checks the remote model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.app.cli import main
from bot.llm.planner import QWEN25
from tests.conftest import write_config
from tests.daemon import free_port
from tests.llm.gguf_factory import write_gguf

pytestmark = pytest.mark.integration


def doctor(tmp_path: Path, llm: dict[str, object]) -> tuple[int, str]:
    config = write_config(tmp_path, {"bot": {"work_dir": str(tmp_path / "work")}, "llm": llm})
    CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)])
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    return result.exit_code, result.output


def test_doctor_prints_the_plan_for_the_tier(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "qwen2.5-14b-instruct-q4_k_m.gguf", QWEN25["14B"])
    code, output = doctor(tmp_path, {"model_path": model.name, "tier": "20gb"})
    assert "model file: Qwen2.5-14B-Instruct (synthetic) (qwen2, Q4_K_M, 48 layers" in output
    assert "plan for tier 20gb: fits: 49/49 layers on the GPU, n_ctx 32768, KV f16" in output
    assert "GPU 14.3 GiB of 18.5 GiB usable" in output
    # The build is probed by loading the model: the synthetic file holds no weights.
    assert "ok    llama.cpp build: " in output and "FAIL  the model does not load" in output
    assert code == 1


def test_doctor_warns_about_a_partial_fit_and_advises(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "qwen2.5-32b-instruct-q4_k_m.gguf", QWEN25["32B"])
    _, output = doctor(tmp_path, {"model_path": model.name, "tier": "4gb"})
    assert "warn  plan for tier 4gb\n        -> partial: " in output
    assert "advice: a model sized for this tier: Qwen2.5-3B-Instruct" in output
    # Runs, slowly: a warning, not a failure (the synthetic file itself does not load).
    assert output.count("FAIL") == 1 and "FAIL  the model does not load" in output


def test_doctor_says_when_the_remote_server_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, output = doctor(tmp_path, {"backend": "openai", "remote": {"base_url": url}})
    assert f"remote model (no model set) at {url}" in output
    assert "cannot reach it (ConnectError): check llm.remote.base_url" in output
    assert "model file" not in output  # no local model in this backend
    assert code == 0  # the server may start after the bot
