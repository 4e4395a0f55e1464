"""`huixiangdou-bot doctor`: check the config, database, model, prompts, adapters and port,
with advice for each problem. Each adapter brings its own check (``Adapter.doctor``)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import httpx

from bot.adapter import Adapter, Finding, build_adapters
from bot.app.cli_support import EXIT_CONFIG, config_option
from bot.app.console.auth import AdminAccess
from bot.app.services import build_services
from bot.config import Config, ConfigError, load_config
from bot.llm import build_info
from bot.llm.gguf_info import GGUFInfo
from bot.llm.llama_cpp import ModelError, plan_for_settings, resolve_model_path, thread_count
from bot.llm.openai_compatible import split_credentials
from bot.llm.planner import Plan
from bot.pipeline import build_pipelines
from bot.prompts import PromptError
from bot.storage.db import Database, SchemaError


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

    def report(self, finding: Finding) -> None:
        if finding.level == "ok":
            self.ok(finding.what, finding.detail)
        elif finding.level == "warn":
            self.warn(finding.what, finding.detail)
        else:
            self.bad(finding.what, finding.detail)


def check_package_names(checks: Checks) -> None:
    """The bot installs the generic top-level names bot, adapters and knowledge: say so when
    another installed distribution provides one of them too (their files would mix)."""
    owners = importlib.metadata.packages_distributions()
    clashes = {
        name: sorted(set(owners.get(name, [])) - {"huixiangdou-bot"})
        for name in ("bot", "adapters", "knowledge")
    }
    clashes = {name: others for name, others in clashes.items() if others}
    if clashes:
        listed = "; ".join(f"{name}: {', '.join(d)}" for name, d in clashes.items())
        checks.warn(
            "package names",
            f"other installed packages also provide {listed}: install huixiangdou-bot in a "
            "virtual environment of its own",
        )


def describe_gguf(path: Path) -> str:
    """Architecture, size and context length from the GGUF header, without loading weights."""
    info = GGUFInfo.read(path)
    size_mb = info.file_size / 2**20
    return (
        f"{info.name} ({info.arch}, {info.file_type}, {info.block_count} layers, "
        f"trained context {info.context_length}, {size_mb:.0f} MiB)"
    )


def check_local_model(checks: Checks, config: Config) -> None:
    """The GGUF file and the planner's decision for llm.tier (layers, context, KV cache)."""
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
    if plan.status != "does-not-fit":
        check_build(checks, config, model_path, plan)


def check_build(checks: Checks, config: Config, model_path: Path, plan: Plan) -> None:
    """The CPU features of the installed llama.cpp build against this CPU, and whether it runs
    the model at all, probed in a child process (a crash there cannot take doctor down)."""
    click.echo("        probing the llama.cpp build (loads the model in a child process) ...")
    kwargs = {
        **plan.llama_kwargs(),
        "n_ctx": 256,
        "n_threads": thread_count(config.llm),
        "n_threads_batch": thread_count(config.llm),
    }
    report = build_info.probe(model_path, kwargs, config.llm.process.start_timeout_seconds)
    for finding in build_info.findings(report, build_info.cpu_flags(), plan.n_gpu_layers > 0):
        checks.report(finding)


def check_running_daemon(checks: Checks, host: str, port: int) -> None:
    """What the bot already running on the server port says about its model process."""
    try:
        health = httpx.get(f"http://{host}:{port}/healthz", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return
    process = health.get("model_process") if isinstance(health, dict) else None
    if not isinstance(process, dict):
        return
    what = f"running bot's model process: {process.get('state')}"
    detail = f"pid {process.get('pid')}, {process.get('restarts')} restart(s)"
    if process.get("last_crash"):
        detail += f", last crash: {process['last_crash']}"
    if process.get("state") == "failed":
        checks.bad(
            what,
            f"{detail}. It crashed {process.get('recent_crashes')} times in a row and is not "
            "restarted: the bot answers only what needs no model. Fix the cause (see the "
            "llama.cpp build lines above and the bot's log), then restart the bot",
        )
    elif process.get("state") == "up" and not process.get("recent_crashes"):
        checks.ok(what, detail)
    else:
        checks.warn(what, detail)


def check_remote_model(checks: Checks, config: Config) -> None:
    """Can the OpenAI-compatible server be reached, and does it accept the key?"""
    remote = config.llm.remote
    headers = {}
    if remote.api_key is not None and remote.api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {remote.api_key.get_secret_value()}"
    what = f"remote model {remote.model or '(no model set)'} at {remote.safe_base_url}"
    base_url, auth = split_credentials(remote.base_url)
    try:
        response = httpx.get(f"{base_url}/models", headers=headers, auth=auth, timeout=5.0)
    except httpx.HTTPError as exc:
        checks.warn(what, f"cannot reach it ({type(exc).__name__}): check llm.remote.base_url")
        return
    if response.status_code in (401, 403):
        checks.bad(what, f"HTTP {response.status_code}: check llm.remote.api_key")
    elif response.status_code >= 400:
        checks.warn(what, f"GET /models answered HTTP {response.status_code}")
    else:
        checks.ok(what, "reachable")


def check_admin_access(checks: Checks, config: Config, adapters: list[Adapter]) -> None:
    """Who can reach the admin pages (the console, the playground's API), and whether they
    are locked because a token is needed and none is set."""
    server = config.server
    access = AdminAccess.decide(server, adapters)
    if server.admin_port is None:
        where = f"{server.host}:{server.port} (with the webhooks)"
    else:
        where = f"{server.admin_host}:{server.admin_port}"
    if access.locked:
        checks.warn("admin pages", access.locked)
    elif access.token:
        checks.ok("admin pages", f"on {where}, token required")
    else:
        checks.ok("admin pages", f"on {where}, open to this machine only (no token needed)")


def check_port(checks: Checks, what: str, host: str, port: int, key: str) -> bool:
    """Whether the port is free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            checks.warn(
                f"{what} {host}:{port}",
                f"cannot bind ({exc.strerror}): is the bot already running? Otherwise change "
                f"{key}",
            )
            return False
    checks.ok(what, f"{host}:{port} is free")
    return True


@click.command()
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
    check_package_names(checks)

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

    try:
        database = Database(config.database_url, config.database)
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
    # Its version from the package metadata: doctor never loads the native library itself.
    checks.ok("llama-cpp-python", importlib.metadata.version("llama_cpp_python"))

    try:
        services = build_services(config, llm=_NoModel())
        pipelines = build_pipelines(services)
        for pipeline in pipelines.values():
            asyncio.run(pipeline.warm_up())
        checks.ok("pipeline and prompts", f"{len(pipelines)} pipeline(s) built, templates check")
    except ConfigError as exc:
        checks.config_errors += 1
        checks.bad("pipeline", str(exc))
    except PromptError as exc:
        checks.bad("prompts", str(exc))

    try:
        adapters = build_adapters(config)
    except ConfigError as exc:
        checks.config_errors += 1
        checks.bad("adapters", str(exc))
        adapters = []
    for adapter in adapters:
        for finding in asyncio.run(adapter.doctor()):
            checks.report(finding)
    check_admin_access(checks, config, adapters)

    server = config.server
    if not check_port(checks, "server port", server.host, server.port, "server.port"):
        check_running_daemon(checks, server.host, server.port)
    if server.admin_port is not None:
        check_port(checks, "admin port", server.admin_host, server.admin_port, "server.admin_port")

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
