"""`ask`, `trace` and `doctor` through the real command line, with the bundled GGUF model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.app.cli import main
from tests.conftest import write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(
        tmp_path,
        {
            "bot": {"work_dir": str(tmp_path / "work")},
            "llm": {"max_tokens": 256, "n_ctx": 1024, "n_threads": 1},
        },
    )
    assert CliRunner().invoke(main, ["db", "upgrade", "--config", str(path)]).exit_code == 0
    return path


def test_ask_then_trace(config: Path) -> None:
    runner = CliRunner()
    asked = runner.invoke(main, ["ask", "Where are the docs?", "--json", "--config", str(config)])
    assert asked.exit_code == 0, asked.output
    view = json.loads(asked.output)
    assert view["status"] == "answered"
    assert view["reply"]["text"]
    assert [step["name"] for step in view["trace"]] == ["normalize", "generate", "send"]

    traced = runner.invoke(main, ["trace", str(view["id"]), "--config", str(config)])
    assert traced.exit_code == 0
    assert f"message #{view['id']}" in traced.output
    assert "decision: answered" in traced.output
    assert "generate" in traced.output and "completion_tokens" in traced.output

    missing = runner.invoke(main, ["trace", "4242", "--config", str(config)])
    assert missing.exit_code == 1
    assert "no message #4242" in missing.output


def test_doctor_passes_on_a_good_config(config: Path) -> None:
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "SmolLM2" in result.output or "Smollm2" in result.output
    assert "all checks passed" in result.output


def test_doctor_names_a_missing_model_file(tmp_path: Path, config: Path) -> None:
    broken = write_config(
        tmp_path,
        {"bot": {"work_dir": str(tmp_path / "work")}, "llm": {"model_path": "nowhere.gguf"}},
        name="broken.yaml",
    )
    result = CliRunner().invoke(main, ["doctor", "--config", str(broken)])
    assert result.exit_code == 1
    assert "nowhere.gguf does not exist" in result.output
    asked = CliRunner().invoke(main, ["ask", "hi there", "--config", str(broken)])
    assert asked.exit_code == 1
    assert "nowhere.gguf does not exist" in asked.output
    assert "Traceback" not in asked.output


def test_doctor_warns_about_open_admin_pages_and_masks_url_credentials(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "bot": {"work_dir": str(tmp_path / "work")},
            "server": {"host": "0.0.0.0", "port": 0},
            "llm": {
                "backend": "openai",
                "remote": {"base_url": "http://proxy:sk-doctor-7d1e@127.0.0.1:9/v1"},
            },
        },
        name="open.yaml",
    )
    assert CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    assert "warn  admin pages" in result.output
    assert "locked: they listen on 0.0.0.0" in result.output
    assert "server.admin_token" in result.output
    assert "http://***@127.0.0.1:9/v1" in result.output
    assert "sk-doctor-7d1e" not in result.output
