"""bot.yaml: every mistake an admin can make gives one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.app.cli import main
from bot.config import ConfigError, load_config
from tests.conftest import write_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


# What an admin wrote (after bot.work_dir), and what the one line must say.
BROKEN = {
    "unknown-key": ("llm:\n  modle_path: x.gguf\n", ["llm.modle_path", "unknown key"]),
    "wrong-type": (
        "queue:\n  max_concurrent_conversations: many\n",
        ["queue.max_concurrent_conversations", "integer", "'many'"],
    ),
    "out-of-range": (
        "queue:\n  debounce_seconds: -1\n",
        ["queue.debounce_seconds", "greater than or equal to 0"],
    ),
    "yaml-syntax": (
        "server:\n  port: 8765\n  host: [oops\n",
        ["line 5", "invalid YAML", "flow sequence"],
    ),
    "unset-env-var": (
        "database:\n  url: postgresql://bot:${HXD_TEST_UNSET_PASSWORD}@db/bot\n",
        ["database.url", "HXD_TEST_UNSET_PASSWORD is not set"],
    ),
    "unknown-middleware": (
        "pipeline: [normalize, no_such_step]\n",
        ["pipeline[1]", "unknown middleware 'no_such_step'", "package.module:Class"],
    ),
    "missing-plugin": (
        "pipeline: [normalize, 'tests.plugins:Missing']\n",
        ["pipeline[1]", "has no attribute 'Missing'"],
    ),
    "not-a-middleware": (
        "pipeline: [normalize, 'tests.plugins:NotAMiddleware']\n",
        ["pipeline[1]", "does not build a middleware"],
    ),
    "middleware-option-type": (
        "middleware:\n  normalize:\n    min_chars: lots\n",
        ["middleware.normalize.min_chars", "integer"],
    ),
    "settings-for-unused-middleware": (
        "middleware:\n  generat:\n    max_tokens: 5\n",
        ["middleware.generat", "in no pipeline"],
    ),
    "empty-pipeline": ("pipeline: []\n", ["pipeline", "at least one middleware"]),
    "group-pipeline": (
        "groups:\n  oc_1:\n    pipeline: [normalize, nope]\n",
        ["groups.oc_1.pipeline[1]", "unknown middleware 'nope'"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_config_gives_clear_error_and_exit_2(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(f"bot:\n  work_dir: {tmp_path / 'work'}\n" + text, encoding="utf-8")
    code, output = run_cli("doctor", "--config", str(path))
    assert code == 2, output
    assert "Traceback" not in output
    assert str(path) in output
    for fragment in expected:
        assert fragment in output


def test_missing_file_gives_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for command in (["run"], ["ask", "hi"], ["db", "upgrade"], ["trace", "1"], ["doctor"]):
        code, output = run_cli(*command, "--config", str(missing))
        assert code == 2, (command, output)
        assert f"{missing}: file not found" in output


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    code, output = run_cli("db", "upgrade", "--config", str(path))
    assert code == 2
    assert "expected a mapping of sections at the top level" in output


def test_shipped_bot_yaml_is_valid_and_every_key_is_commented() -> None:
    """Each setting sits under a comment: directly, or in a run of keys that one comment covers.
    Section headers ("llm:") need none."""
    config = load_config(REPO / "bot.yaml")
    assert config.pipeline[0] == "normalize"
    covered = False
    for number, line in enumerate((REPO / "bot.yaml").read_text("utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            covered = False
        elif stripped.startswith("#"):
            covered = True
        elif stripped.startswith("-") or stripped.endswith(":"):
            continue
        else:
            assert covered or "#" in stripped, f"bot.yaml line {number} has no comment: {line!r}"


def test_env_interpolation_and_secret_redaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HXD_TEST_DB_PASSWORD", "s3cret-value")
    path = write_config(
        tmp_path,
        {
            "bot": {"work_dir": "state", "name": "${HXD_TEST_BOT_NAME:-Bean}"},
            "database": {"url": "postgresql://bot:${HXD_TEST_DB_PASSWORD}@db/bot"},
        },
    )
    config = load_config(path)
    assert config.bot.name == "Bean"
    assert config.database_url == "postgresql://bot:s3cret-value@db/bot"
    # relative paths are relative to the bot.yaml, not to the current directory
    assert config.work_dir == tmp_path.resolve() / "state"


def test_secret_fields_are_redacted() -> None:
    from pydantic import SecretStr

    from bot.config import Section

    class WithSecret(Section):
        app_secret: SecretStr

    settings = WithSecret(app_secret=SecretStr("abc123"))
    assert "abc123" not in repr(settings)
    assert "abc123" not in str(settings)
    assert settings.app_secret.get_secret_value() == "abc123"


def test_load_config_raises_config_error_not_validation_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(path)


def test_a_bad_value_under_a_secret_key_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("llm:\n  remote:\n    api_key: [sk-should-not-show]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "llm.remote.api_key" in str(error.value)
    assert "sk-should-not-show" not in str(error.value)
