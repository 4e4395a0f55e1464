"""The database handle: engine, sessions, and the alembic schema version.

Repository calls are short, synchronous SQLAlchemy work run in a thread (``Database.run``), so
the event loop never waits on disk. SQLite gets WAL and a busy timeout so the daemon and a CLI
command can use the same file.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.resources import resource_dir

P = ParamSpec("P")
T = TypeVar("T")


class SchemaError(Exception):
    """The database is not at the schema this code expects."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply migrations up to head; returns (revision before, revision after)."""
        before = self.current_revision()
        config = alembic_config(self.url)
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return before, self.current_revision()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @functools.cached_property
    def _head(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def head_revision(self) -> str | None:
        """The revision this code needs; read from migrations/ once (/healthz asks often)."""
        return self._head

    def check_schema(self) -> None:
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            state = "empty (no schema yet)" if current is None else f"at revision {current}"
            raise SchemaError(
                f"the database {self.safe_url} is {state}, but this version of huixiangdou-bot "
                f"needs revision {head}: run 'huixiangdou-bot db upgrade' first"
            )

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    async def run(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a repository function in a worker thread, in its own committed transaction."""

        def work() -> T:
            with self.sessions.begin() as session:
                return fn(session, *args, **kwargs)

        return await asyncio.to_thread(work)

    def run_sync(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.sessions.begin() as session:
            return fn(session, *args, **kwargs)

    def dispose(self) -> None:
        self.engine.dispose()
