"""`huixiangdou-bot calibrate` and `huixiangdou-bot classify`: the gate from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from bot.app.cli_support import config_option, fail, load, startup_guard
from bot.app.services import build_services
from bot.config import Config
from bot.context import TurnContext
from bot.message import Message, Reply
from bot.pipeline import CallNext, Pipeline, build_pipelines
from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.calibrate import Calibrator
from knowledge.rejection.examples import ExamplesError


def open_knowledge(config: Config) -> KnowledgeBase:
    kb = KnowledgeBase.open(config.knowledge, config.work_dir)
    kb.warm_up()
    return kb


@click.command()
@config_option
@click.option(
    "--good",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Good example questions (default: rejection.good_questions).",
)
@click.option(
    "--bad",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bad example questions (default: rejection.bad_questions).",
)
@click.option(
    "--chitchat-share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Share of chitchat in your groups (default: rejection.chitchat_share).",
)
def calibrate(
    config_path: Path, good: Path | None, bad: Path | None, chitchat_share: float | None
) -> None:
    """Fit the rejection gate from the good/bad example questions and store it with the index.

    Prints the cross-validated precision, recall and F1 and the chosen threshold, and draws
    the precision-recall curve (pr_curve.png beside the gate, also shown in the playground).
    """
    config = load(config_path)
    settings = config.rejection
    update: dict[str, Any] = {}
    if good is not None:
        update["good_questions"] = good.resolve()
    if bad is not None:
        update["bad_questions"] = bad.resolve()
    if chitchat_share is not None:
        update["chitchat_share"] = chitchat_share
    settings = settings.model_copy(update=update)
    kb = startup_guard(lambda: open_knowledge(config))
    calibrator = Calibrator(kb, settings, config.work_dir)
    try:
        report = calibrator.fit()
    except (ExamplesError, ValueError) as exc:
        fail(str(exc))
    for line in report.lines():
        click.echo(line)


def read_queries(path: Path) -> list[dict[str, Any]]:
    """JSON Lines: ``{"query": ..., "mentioned": bool}`` (mentioned optional) or bare strings."""
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read: {exc}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{path}: line {number}: invalid JSON: {exc.msg}")
        if isinstance(item, str):
            item = {"query": item}
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            fail(f'{path}: line {number}: expected {{"query": "..."}}')
        items.append(item)
    return items


class _Accepted:
    """The end of the classify chain: whatever gets here would be answered."""

    name = "accepted"

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        ctx.decision = "accepted"
        return None


def gate_stages(config: Config) -> list[str]:
    """The pipeline's middlewares up to its last rejection stage: everything that decides
    whether to answer, and nothing that generates."""
    names = [n for n in config.pipeline if n != "gate"]  # group manners need a running bot
    last = max((i for i, n in enumerate(names) if n.startswith("reject.")), default=-1)
    if last < 0:
        return [n for n in names if n == "normalize"] + ["reject.embedding"]
    return names[: last + 1]


def verdict(ctx: TurnContext) -> dict[str, Any]:
    deciding = next((s for s in ctx.trace if s.verdict.startswith("ignored")), None)
    accept = deciding is None
    if deciding is None:
        scored = [s for s in ctx.trace if s.name.startswith("reject.")]
        deciding = scored[-1] if scored else ctx.trace[-1]
    return {
        "query": ctx.message.text,
        "accept": accept,
        "score": round(deciding.score, 6)
        if deciding.score is not None
        else (1.0 if accept else 0.0),
        "stage": deciding.name,
    }


async def classify_all(
    config: Config, items: list[dict[str, Any]], concurrency: int = 512
) -> list[dict[str, Any]]:
    stages = gate_stages(config)
    settings = {k: v for k, v in config.middleware.items() if k in stages}
    staged = config.model_copy(update={"pipeline": stages, "groups": {}, "middleware": settings})
    services = build_services(staged)
    built = build_pipelines(services)[""]
    pipeline = Pipeline([*built.middlewares, _Accepted()])
    await pipeline.warm_up()
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, item: dict[str, Any]) -> dict[str, Any]:
        message = Message(
            platform="classify",
            conversation_id=str(item.get("group", "classify")),
            sender_id="classify",
            text=item["query"],
            platform_message_id=f"classify-{index}",
            mentioned_bot=bool(item.get("mentioned", False)),
        )
        ctx = TurnContext(
            message=message,
            message_id=index,
            config=config,
            group=config.group(message.conversation_id),
            question=message.text,
        )
        async with limit:
            await pipeline.run(ctx)
        return verdict(ctx)

    try:
        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
    finally:
        await services.close()


@click.command()
@config_option
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines of {"query": ...} (optionally "mentioned": true).',
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='Where to write one {"query", "accept", "score", "stage"} per line.',
)
def classify(config_path: Path, input_path: Path, output_path: Path) -> None:
    """Decide, for many messages at once, which the bot would answer (no answers generated)."""
    config = load(config_path)
    items = read_queries(input_path)
    started = time.perf_counter()
    results = startup_guard(lambda: asyncio.run(classify_all(config, items)))
    seconds = time.perf_counter() - started
    tmp = output_path.with_name(output_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for result in results:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    tmp.replace(output_path)
    accepted = sum(r["accept"] for r in results)
    click.echo(
        f"{len(results)} messages: {accepted} accepted, {len(results) - accepted} ignored "
        f"in {seconds:.1f} s -> {output_path}",
        err=True,
    )
    sys.stdout.flush()
