"""The `huixiangdou-bot` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import uvicorn

from adapters.console import ConsoleAdapter
from bot.adapter import build_adapters
from bot.app.cli_support import (
    check_schema,
    config_option,
    fail,
    load,
    open_database,
    startup_guard,
)
from bot.app.doctor import doctor
from bot.app.jobs import Jobs
from bot.app.kb_cli import kb
from bot.app.rejection_cli import calibrate, classify
from bot.app.server import create_app
from bot.app.services import build_services
from bot.llm.llama_cpp import plan_for_settings, resolve_model_path
from bot.message import Message
from bot.runtime import Bot
from bot.storage import repo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="huixiangdou-bot")
def main() -> None:
    """A knowledge assistant for Feishu/Lark, DingTalk and WeCom group chats."""


# -- run --------------------------------------------------------------------------------------


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the bot daemon: adapters, pipeline and the HTTP server."""
    config = load(config_path, daemon=True)
    database = open_database(config)
    adapters = startup_guard(lambda: build_adapters(config))
    services = startup_guard(lambda: build_services(config))
    bot = startup_guard(lambda: Bot(services, database, adapters))
    app = create_app(bot, Jobs(services, bot.recovery))
    settings = config.server
    log = logging.getLogger("huixiangdou-bot")
    log.info(
        "serving on http://%s:%d (adapters: %s)",
        settings.host,
        settings.port,
        ", ".join(a.name for a in adapters) or "none",
    )
    level = config.logging.level.lower()
    server_config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=level, lifespan="on"
    )
    server = uvicorn.Server(server_config)
    sockets = [server_config.bind_socket()]
    if settings.admin_port is not None:
        # One server on two sockets: the app sends each request by the port it came in on.
        admin = uvicorn.Config(app, host=settings.admin_host, port=settings.admin_port)
        sockets.append(admin.bind_socket())
        log.info("admin pages on http://%s:%d", settings.admin_host, settings.admin_port)
    startup_guard(lambda: asyncio.run(server.serve(sockets=sockets)))
    if not server.started:
        fail("the server did not start (see the log above)")


# -- ask --------------------------------------------------------------------------------------


def print_view(view: dict[str, Any]) -> None:
    click.echo(
        f"message #{view['id']} from {view['sender_name'] or view['sender_id']} "
        f"in {view['platform']}:{view['conversation_id']}"
    )
    click.echo(f"  text:     {view['text']}")
    click.echo(f"  status:   {view['status']}")
    click.echo(f"  decision: {view['decision']}")
    reply = view.get("reply")
    if reply:
        click.echo(f"  reply ({reply['status']}, {reply['attempts']} attempt(s)):")
        for line in reply["text"].splitlines() or [""]:
            click.echo(f"    {line}")
        for i, ref in enumerate(reply["references"], 1):
            label = ref.get("url") or ref["source"] + (
                f" § {ref['title']}" if ref.get("title") else ""
            )
            click.echo(f"    [{i}] {label}")
    click.echo("  trace:")
    header = f"    {'step':<18} {'verdict':<28} {'score':>8} {'threshold':>9} {'ms':>9}  detail"
    click.echo(header)
    for step in view["trace"]:
        score = "" if step.get("score") is None else f"{step['score']:.3f}"
        threshold = "" if step.get("threshold") is None else f"{step['threshold']:.3f}"
        detail = json.dumps(step.get("detail") or {}, ensure_ascii=False)
        click.echo(
            f"    {step['name']:<18} {step['verdict']:<28} {score:>8} {threshold:>9} "
            f"{step['ms']:>9.1f}  {detail}"
        )


@main.command()
@config_option
@click.argument("question")
@click.option("--sender", default="cli-user", show_default=True, help="Who asks.")
@click.option(
    "--group",
    "conversation_id",
    default="cli",
    show_default=True,
    help="The conversation id, for per-group settings in bot.yaml.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ask(
    config_path: Path, question: str, sender: str, conversation_id: str, as_json: bool
) -> None:
    """Send one message through the pipeline and print the reply and the trace."""
    config = load(config_path)
    config = config.model_copy(
        update={"queue": config.queue.model_copy(update={"debounce_seconds": 0.0})}
    )
    database = open_database(config, check=False)
    bot = startup_guard(lambda: Bot(build_services(config), database, [ConsoleAdapter()]))
    check_schema(database)

    async def go() -> dict[str, Any] | None:
        await bot.start(recover=False)
        try:
            stored = await bot.inbox.receive(
                Message(
                    platform="cli",
                    conversation_id=conversation_id,
                    sender_id=sender,
                    sender_name=sender,
                    text=question,
                    platform_message_id=uuid.uuid4().hex,
                    mentioned_bot=True,
                )
            )
            await bot.join()
            return await bot.inbox.message_view(stored.id)
        finally:
            await bot.stop()

    view = startup_guard(lambda: asyncio.run(go()))
    if view is None:
        fail("the message was not stored")
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print_view(view)
    if view["status"] == "failed":
        sys.exit(1)


# -- trace ------------------------------------------------------------------------------------


@main.command()
@config_option
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def trace(config_path: Path, message_id: int, as_json: bool) -> None:
    """Show why the bot answered or stayed silent on one message."""
    config = load(config_path)
    database = open_database(config)
    view = database.run_sync(repo.message_view, message_id)
    if view is None:
        fail(f"no message #{message_id} in {database.safe_url}")
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print_view(view)


# -- llm --------------------------------------------------------------------------------------


@main.group()
def llm() -> None:
    """The local model."""


@llm.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--api-key",
    envvar="HUIXIANGDOU_LLM_API_KEY",
    help="Require this bearer key (the bots' llm.remote.api_key); for a non-loopback --host.",
)
def serve(config_path: Path, host: str, port: int, api_key: str | None) -> None:
    """Serve llm.model_path as an OpenAI-compatible HTTP service, loaded as the tier planner
    says, for bots with llm.backend: openai (see the README)."""
    config = load(config_path, daemon=True)
    # fastapi and the native library: loaded only by the command that serves the model
    from bot.llm.serve import serve as serve_model

    path = startup_guard(lambda: resolve_model_path(config.llm))
    plan = startup_guard(lambda: plan_for_settings(config.llm, path))
    logging.getLogger("huixiangdou-bot").info(
        "serving %s on http://%s:%d/v1 (%s)", path.name, host, port, plan.summary()
    )
    settings = config.llm.model_copy(update={"model_path": path})
    startup_guard(lambda: serve_model(settings, host, port, api_key))


# -- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@config_option
def upgrade(config_path: Path) -> None:
    """Apply the database migrations (safe to run again)."""
    config = load(config_path)
    database = open_database(config, check=False)
    before, after = database.upgrade()
    if before == after:
        click.echo(f"{database.safe_url}: already at revision {after}")
    else:
        click.echo(f"{database.safe_url}: upgraded {before or '(empty)'} -> {after}")


@db.command()
@config_option
def current(config_path: Path) -> None:
    """Print the database's schema revision and the one this code needs."""
    config = load(config_path)
    database = open_database(config, check=False)
    click.echo(f"current: {database.current_revision() or '(empty)'}")
    click.echo(f"head:    {database.head_revision()}")


# -- command groups of their own modules --------------------------------------------------

main.add_command(doctor)
main.add_command(kb)
main.add_command(calibrate)
main.add_command(classify)

if __name__ == "__main__":
    main()
