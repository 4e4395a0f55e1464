"""The alembic migrations and the SQLAlchemy models must describe the same schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from bot.app.cli import main
from bot.storage.db import Database, SchemaError
from bot.storage.models import Base
from tests.conftest import write_config

pytestmark = pytest.mark.unit


def test_migrations_match_the_models(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    database.upgrade()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    database.check_schema()


def test_start_up_refuses_an_empty_or_outdated_database(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    with pytest.raises(SchemaError, match=r"empty .* run 'huixiangdou-bot db upgrade'"):
        database.check_schema()
    database.upgrade()
    with database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaError, match=r"at revision 0000, but .* needs revision"):
        database.check_schema()


def test_cli_db_upgrade_then_run_refuses_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"bot": {"work_dir": str(tmp_path / "work")}})
    runner = CliRunner()
    refused = runner.invoke(main, ["ask", "hello there", "--config", str(config)])
    assert refused.exit_code == 1
    assert "run 'huixiangdou-bot db upgrade' first" in refused.output
    first = runner.invoke(main, ["db", "upgrade", "--config", str(config)])
    assert first.exit_code == 0 and "upgraded (empty) -> 0003" in first.output
    again = runner.invoke(main, ["db", "upgrade", "--config", str(config)])
    assert again.exit_code == 0 and "already at revision 0003" in again.output
