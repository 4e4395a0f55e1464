"""What every `huixiangdou-bot` subcommand shares: --config, loading, clear failures.

Kept apart from bot/cli.py so command groups that live with their packages (knowledge/cli.py,
knowledge/gate/cli.py) can import it without importing the command line itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from bot.config import Config, ConfigError, load_config
from bot.llm.protocol import ModelError
from bot.prompts import PromptError
from bot.storage.db import Database, SchemaError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def fail(message: str, code: int = EXIT_STARTUP) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def config_option(fn: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("bot.yaml"),
        show_default=True,
        envvar="HUIXIANGDOU_CONFIG",
        help="The bot.yaml to use.",
    )(fn)


def load(config_path: Path, *, daemon: bool = False) -> Config:
    """Load bot.yaml and set up logging: the daemon logs at the configured level, one-shot
    commands only say what went wrong (their output is the point)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    level = config.logging.level if daemon or config.logging.level == "DEBUG" else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # Two lines per run of every job (the sweep runs every minute): only its failures.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO: noise, and a URL may carry a key (a
    # DingTalk sessionWebhook's session).
    logging.getLogger("httpx").setLevel(max(logging.getLevelName(level), logging.WARNING))
    return config


def open_database(config: Config, *, check: bool = True) -> Database:
    database = Database(config.database_url, config.database)
    if check:
        check_schema(database)
    return database


def check_schema(database: Database) -> None:
    try:
        database.check_schema()
    except SchemaError as exc:
        fail(str(exc))


def startup_guard(fn: Callable[[], Any]) -> Any:
    """Turn the start-up errors an admin can fix into one clear line instead of a traceback."""
    try:
        return fn()
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except (ModelError, PromptError) as exc:
        fail(str(exc))
