"""What the platforms' ack benches share (feishu_ack_bench.py, dingtalk_ack_bench.py,
wecom_ack_bench.py): the real bot with one platform adapter and a slow scripted model, and the
latency summary they print."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.adapter import Adapter, build_adapters
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.conftest import write_config
from tests.fakes import ScriptedChatModel


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every ack bench takes: how many messages, how many at a time, how slow the
    model is."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    return parser


def latency(seconds: list[float]) -> str:
    """n, median, 95th percentile and maximum, in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"n={len(ms)} p50={statistics.median(ms):.1f} ms p95={p95:.1f} ms max={ms[-1]:.1f} ms"


@contextlib.asynccontextmanager
async def running_bot(
    work: Path,
    name: str,
    section: dict[str, Any],
    answer: str,
    model_seconds: float,
    label: str = "",
) -> AsyncIterator[Adapter]:
    """A started bot whose one adapter is ``name`` (configured by ``section``), answering
    ``answer`` after ``model_seconds``, eight conversations at a time; yields the adapter. Its
    bot.yaml and state go into ``work``, named ``label`` (default: ``name``)."""
    label = label or name
    config = load_config(
        write_config(
            work,
            {
                "bot": {"work_dir": str(work / label)},
                "queue": {"debounce_seconds": 0, "max_concurrent_conversations": 8},
                "pipeline": ["normalize", "generate"],
                "adapters": {"playground": {"enabled": False}, name: section},
            },
            name=f"{label}.yaml",
        )
    )
    database = Database(config.database_url, config.database)
    database.upgrade()
    model = ScriptedChatModel(answer, delay=model_seconds)
    adapters = build_adapters(config)
    bot = Bot(build_services(config, llm=model), database, adapters)
    await bot.start()
    try:
        yield adapters[0]
    finally:
        await bot.stop()
        database.dispose()
