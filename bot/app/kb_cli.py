"""`huixiangdou-bot kb build | status | search`: the knowledge base from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.app.cli_support import EXIT_CONFIG, config_option, fail, load
from bot.config import Config
from knowledge.embedders import EmbedderConfigError, EmbedderError
from knowledge.indexer import BuildBusy
from knowledge.knowledge_base import KnowledgeBase
from knowledge.rerank import RerankerConfigError, RerankerError
from knowledge.sources import SourceError
from knowledge.store import StoreError


def open_kb(config: Config, *, need_sources: bool = True) -> KnowledgeBase:
    if need_sources and not config.knowledge.sources:
        fail(
            f"{config.source or 'bot.yaml'}: knowledge.sources: no folders to index "
            "(list at least one source path)",
            EXIT_CONFIG,
        )
    return KnowledgeBase.open(config.knowledge, config.work_dir)


def guarded(fn: Any) -> Any:
    """Run a knowledge base call, turning the errors an admin can fix into one clear line."""
    try:
        return fn()
    except (SourceError, EmbedderConfigError, RerankerConfigError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except (BuildBusy, EmbedderError, RerankerError, StoreError) as exc:
        fail(str(exc))


@click.group()
def kb() -> None:
    """Knowledge base: build the index, show its status, search it."""


@kb.command()
@config_option
@click.option("--full", is_flag=True, help="Re-embed every document, not only the changed ones.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show progress bars (default: when writing to a terminal).",
)
def build(config_path: Path, full: bool, progress: bool | None) -> None:
    """Index the folders in knowledge.sources; only what changed since the last build."""
    config = load(config_path)
    knowledge = open_kb(config)
    show = sys.stderr.isatty() if progress is None else progress
    report = guarded(lambda: knowledge.build(progress=show, full=full))
    for line in report.summary():
        click.echo(line)


@kb.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(config_path: Path, as_json: bool) -> None:
    """Documents, chunks, last build, embedder and sizes of the index."""
    config = load(config_path)
    knowledge = open_kb(config, need_sources=False)
    result = guarded(knowledge.status)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    for line in result.lines():
        click.echo(line)


@kb.command()
@config_option
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--collection", default=None, help="Search only this collection.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
def search(config_path: Path, query: str, k: int, collection: str | None, as_json: bool) -> None:
    """Ranked passages for QUERY: documents by the ranker's score, with every retriever's
    score and the features that weighed most."""
    config = load(config_path)
    knowledge = open_kb(config, need_sources=False)
    hits = guarded(lambda: knowledge.search(query, k=k, collection=collection))
    if as_json:
        rows = [
            {
                "source": h.source,
                "title": h.title,
                "score": h.score,
                "scores": h.scores,
                "features": h.features,
                "collection": h.collection,
                "chunk_id": h.chunk_id,
                "text": h.text,
            }
            for h in hits
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("no passages (is the index built? huixiangdou-bot kb build)")
        return
    for rank, hit in enumerate(hits, 1):
        scores = "  ".join(f"{name} {value:.3f}" for name, value in hit.scores.items())
        click.echo(f"{rank}. {hit.source} § {hit.title}")
        click.echo(f"   score {hit.score:.4f}  ({scores})")
        if hit.features:
            weighed = ", ".join(f"{name} {value:+.2f}" for name, value in hit.features.items())
            click.echo(f"   weighed most: {weighed}")
        preview = " ".join(hit.text.split())
        click.echo(f"   {preview[:200]}{'…' if len(preview) > 200 else ''}")
