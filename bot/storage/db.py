"""The database handle: engine, sessions, and the alembic schema version.

Repository calls are short, synchronous SQLAlchemy work run in a thread pool of their own
(``Database.run``), so the event loop never waits on disk and nothing else (a slow platform API
in asyncio's default pool) can starve them. SQLite gets WAL and a busy timeout so the daemon
and a CLI command can use the same file; a call that still finds the database locked after the
busy timeout is tried again as a whole (each call is one transaction, rolled back on failure).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from bot.config import DatabaseSettings
from bot.resources import resource_dir

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class SchemaError(Exception):
    """The database is not at the schema this code expects."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str, busy_timeout_seconds: float = 10.0) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        pragmas = functools.partial(_sqlite_pragmas, busy_ms=round(busy_timeout_seconds * 1000))
        event.listen(engine, "connect", pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" (another connection held the write lock for longer than
    the busy timeout): worth trying the whole transaction again."""
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str, settings: DatabaseSettings | None = None) -> None:
        self.url = url
        self.settings = settings or DatabaseSettings()
        self.engine = create_db_engine(url, self.settings.busy_timeout_seconds)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="database")

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
        """Run a repository function in the database's own threads, in its own committed
        transaction, tried again while the database is locked."""
        work = functools.partial(self.run_sync, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def run_sync(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        attempts = self.settings.attempts
        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception(_locked),
            before_sleep=lambda state: log.warning(
                "database locked for more than %gs (attempt %d of %d of %s); trying again",
                self.settings.busy_timeout_seconds,
                state.attempt_number,
                attempts,
                getattr(fn, "__name__", "a call"),
            ),
            reraise=True,
        ):
            with attempt, self.sessions.begin() as session:
                return fn(session, *args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def dispose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
