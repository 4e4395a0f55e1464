"""The `huixiangdou-bot` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from bot.cli_support import (
    EXIT_CONFIG,
    EXIT_STARTUP,
    check_schema,
    config_option,
    fail,
    load,
    open_database,
    startup_guard,
)
from bot.config import Config, ConfigError, load_config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_STARTUP",
    "check_schema",
    "config_option",
    "fail",
    "load",
    "main",
    "open_database",
    "startup_guard",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="huixiangdou-bot")
def main() -> None:
    """A knowledge assistant for Feishu/Lark, DingTalk and WeCom group chats."""


# -- run --------------------------------------------------------------------------------------


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the bot daemon: adapters, pipeline and the HTTP server."""
    import uvicorn

    from adapters import build_adapters
    from bot.core import Bot
    from bot.server import create_app
    from bot.services import build_services

    config = load(config_path, daemon=True)
    database = open_database(config)

    adapters = build_adapters(config)
    app = startup_guard(lambda: create_app(Bot(build_services(config), database, adapters)))
    logging.getLogger("huixiangdou-bot").info(
        "serving on http://%s:%d (adapters: %s)",
        config.server.host,
        config.server.port,
        ", ".join(a.name for a in adapters) or "none",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            log_level=config.logging.level.lower(),
            lifespan="on",
        )
    )
    startup_guard(lambda: asyncio.run(server.serve()))
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
    from adapters.console import ConsoleAdapter
    from bot.core import Bot
    from bot.message import Message
    from bot.services import build_services

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
            stored = await bot.receive(
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
            return await bot.message_view(stored.id)
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
    from bot.storage import repo

    config = load(config_path)
    database = open_database(config)
    view = database.run_sync(repo.message_view, message_id)
    if view is None:
        fail(f"no message #{message_id} in {database.safe_url}")
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print_view(view)


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


# -- doctor -----------------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.config_errors = 0

    def ok(self, what: str, detail: str = "") -> None:
        click.echo(click.style("  ok    ", fg="green") + what + (f": {detail}" if detail else ""))

    def bad(self, what: str, advice: str) -> None:
        self.failed += 1
        click.echo(click.style("  FAIL  ", fg="red") + what)
        click.echo(f"        -> {advice}")

    def warn(self, what: str, advice: str) -> None:
        click.echo(click.style("  warn  ", fg="yellow") + what)
        click.echo(f"        -> {advice}")


def describe_gguf(path: Path) -> str:
    """Architecture, size and context length from the GGUF header, without loading weights."""
    from bot.llm.gguf_info import GGUFInfo

    info = GGUFInfo.read(path)
    size_mb = info.file_size / 2**20
    return (
        f"{info.name} ({info.arch}, {info.file_type}, {info.block_count} layers, "
        f"trained context {info.context_length}, {size_mb:.0f} MiB)"
    )


def check_local_model(checks: Checks, config: Config) -> None:
    """The GGUF file and the planner's decision for llm.tier (layers, context, KV cache)."""
    from bot.llm.llama_cpp import ModelError, plan_for_settings, resolve_model_path

    try:
        model_path = resolve_model_path(config.llm)
        checks.ok("model file", describe_gguf(model_path))
        plan = plan_for_settings(config.llm, model_path)
    except ModelError as exc:
        checks.bad("model file", str(exc))
        return
    except Exception as exc:
        checks.bad("model file", f"not a readable GGUF file: {exc}")
        return
    what = f"plan for tier {plan.tier.name}"
    if plan.status == "does-not-fit":
        checks.bad(what, "; ".join((plan.summary(), *plan.advice[:2])))
    elif plan.status == "partial" or (plan.tier.gpu_gib > 0 and plan.n_gpu_layers == 0):
        checks.warn(what, plan.summary())
    else:
        checks.ok(what, plan.summary())
    for line in plan.lines()[3:]:
        click.echo(f"        {line}")
    import llama_cpp

    if plan.n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        checks.warn(
            "GPU offload",
            "this llama-cpp-python build has no GPU support: reinstall it with "
            "CMAKE_ARGS=-DGGML_CUDA=on (or set llm.tier: cpu)",
        )


def check_remote_model(checks: Checks, config: Config) -> None:
    """Can the OpenAI-compatible server be reached, and does it accept the key?"""
    import httpx

    remote = config.llm.remote
    headers = {}
    if remote.api_key is not None and remote.api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {remote.api_key.get_secret_value()}"
    what = f"remote model {remote.model or '(no model set)'} at {remote.base_url}"
    try:
        response = httpx.get(f"{remote.base_url}/models", headers=headers, timeout=5.0)
    except httpx.HTTPError as exc:
        checks.warn(what, f"cannot reach it ({type(exc).__name__}): check llm.remote.base_url")
        return
    if response.status_code in (401, 403):
        checks.bad(what, f"HTTP {response.status_code}: check llm.remote.api_key")
    elif response.status_code >= 400:
        checks.warn(what, f"GET /models answered HTTP {response.status_code}")
    else:
        checks.ok(what, "reachable")


@main.command()
@config_option
def doctor(config_path: Path) -> None:
    """Check the config, database, model, prompts and port, with advice for each problem."""
    checks = Checks()
    click.echo(f"huixiangdou-bot doctor ({config_path})")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        checks.bad("bot.yaml", str(exc))
        sys.exit(EXIT_CONFIG)
    checks.ok("bot.yaml", f"pipeline: {' -> '.join(config.pipeline)}")

    checks.ok("python", sys.version.split()[0])

    work = config.work_dir
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / f".doctor-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
        free_gb = shutil.disk_usage(work).free / 2**30
        checks.ok("work dir", f"{work} ({free_gb:.1f} GiB free)")
    except OSError as exc:
        checks.bad("work dir", f"{work} is not writable ({exc}): fix bot.work_dir")

    from bot.storage.db import Database, SchemaError

    try:
        database = Database(config.database_url)
        database.check_schema()
        checks.ok("database", f"{database.safe_url} at revision {database.current_revision()}")
    except SchemaError as exc:
        checks.bad("database schema", str(exc))
    except Exception as exc:
        checks.bad("database", f"cannot open {config.database.url}: {exc}")

    if config.llm.backend in ("llama_cpp", "hybrid"):
        check_local_model(checks, config)
    if config.llm.backend in ("openai", "hybrid"):
        check_remote_model(checks, config)
    try:
        import llama_cpp

        checks.ok("llama-cpp-python", llama_cpp.__version__)
    except ImportError as exc:
        checks.bad("llama-cpp-python", f"cannot import ({exc}): run 'make install'")

    from bot.pipeline import build_pipelines
    from bot.prompts import PromptError, Prompts
    from bot.services import Services, build_knowledge

    try:
        prompts = Prompts(config.prompts.dir)
        services = Services(
            config=config, prompts=prompts, llm=_NoModel(), knowledge=build_knowledge(config)
        )
        pipelines = build_pipelines(services)
        for pipeline in pipelines.values():
            asyncio.run(pipeline.warm_up())
        checks.ok("pipeline and prompts", f"{len(pipelines)} pipeline(s) built, templates check")
    except ConfigError as exc:
        checks.config_errors += 1
        checks.bad("pipeline", str(exc))
    except PromptError as exc:
        checks.bad("prompts", str(exc))

    feishu = config.adapters.feishu
    if feishu is not None and feishu.enabled:
        from adapters.feishu import FeishuAdapter

        try:
            info = asyncio.run(FeishuAdapter(feishu).bot_info())
            checks.ok("feishu", f"bot {info.get('app_name')!r} at {feishu.domain} ({feishu.mode})")
        except RuntimeError as exc:
            checks.bad("feishu", str(exc))

    host, port = config.server.host, config.server.port
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            checks.ok("server port", f"{host}:{port} is free")
        except OSError as exc:
            checks.warn(
                f"server port {host}:{port}",
                f"cannot bind ({exc.strerror}): is the bot already running? "
                "Otherwise change server.port",
            )

    if checks.failed:
        click.secho(f"{checks.failed} problem(s) found", fg="red")
        sys.exit(EXIT_CONFIG if checks.config_errors else 1)
    click.secho("all checks passed", fg="green")


class _NoModel:
    """Stands in for the chat model when doctor builds the pipeline without loading weights."""

    name = "not loaded"

    async def warm_up(self) -> None:
        return None

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("doctor does not run the model")

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("doctor does not run the model")

    async def close(self) -> None:
        return None


# Command groups that live with their packages.
from knowledge.cli import kb  # noqa: E402
from knowledge.gate.cli import calibrate, classify  # noqa: E402

main.add_command(kb)
main.add_command(calibrate)
main.add_command(classify)

if __name__ == "__main__":
    main()
