"""A non-editable install must carry prompts/, migrations/ and the admin console's templates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from pathlib import Path
import bot, adapters.playground.adapter
from bot.app.console import routes as console
from bot.resources import resource_dir
from bot.prompts import Prompts
from bot.storage.db import Database
target = Path(sys.argv[1]).resolve()
assert Path(bot.__file__).resolve().is_relative_to(target), bot.__file__
for name in ("prompts", "migrations"):
    assert resource_dir(name).is_relative_to(target), resource_dir(name)
assert console.TEMPLATES.is_relative_to(target), console.TEMPLATES
for name in ("base.html", "chat.html", "_message.html", "log.html", "health.html"):
    console.template_environment().get_template(name)
Prompts().check("generate", {"bot_name", "topic", "question", "chunks", "history"})
from knowledge.ranking import MODEL_FILE, DocumentRanker
assert MODEL_FILE.resolve().is_relative_to(target), MODEL_FILE
DocumentRanker.load()
database = Database("sqlite:///" + sys.argv[2])
print(database.upgrade())
database.check_schema()
"""


def test_wheel_install_finds_prompts_and_migrations(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    assert not (target / "prompts").exists(), "prompts/ must live inside the bot package"
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(target), str(tmp_path / "bot.db")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "(None, '0003')" in result.stdout
