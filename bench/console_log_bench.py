"""The admin console's database reads at 100,000 stored messages.

Seeds a fresh SQLite database (migrated to head) with ``--messages`` messages shaped like a real
deployment's (tests/console/seed.py: 200 groups on four platforms over 60 days, mostly silence
for a handful of reasons, replies for the answered ones, a gate trace on each), then times the
message log's page query under each filter, first page and deep in the log, and the other
console reads. Prints the median and the worst of ``--rounds`` runs of each.

    nice .venv/bin/python bench/console_log_bench.py [--messages 100000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app.console import queries
from bot.storage.db import Database
from tests.console.seed import seed

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, float, Any]:
    fn()  # warm the page cache and the connection pool
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "console-bench.db"
        database = Database(f"sqlite:///{path}")
        database.upgrade()
        started = time.perf_counter()
        counts = seed(database, args.messages, now=NOW)
        print(
            f"seeded {args.messages:,} messages in {time.perf_counter() - started:.1f} s; "
            f"database {path.stat().st_size / 1e6:.0f} MB; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        print(f"decisions: {dict(sorted(counts.items(), key=lambda kv: -kv[1]))}")
        middle = args.messages // 2
        week = (NOW - timedelta(days=7)).date()
        cases: list[tuple[str, queries.LogFilter]] = [
            ("no filter", queries.LogFilter()),
            ("platform dingtalk", queries.LogFilter(platform="dingtalk")),
            ("one group", queries.LogFilter(group="oc_group_0007")),
            ("decision ignored", queries.LogFilter(status="ignored")),
            ("decision failed", queries.LogFilter(status="failed")),
            ("reason off-topic (45%)", queries.LogFilter(reason="off-topic")),
            ("reason overloaded (0.2%)", queries.LogFilter(reason="overloaded")),
            ("last 7 days", queries.LogFilter(since=week)),
            ("one day", queries.LogFilter(since=week, until=week)),
            (
                "wecom + failed + 7 days",
                queries.LogFilter(platform="wecom", status="failed", since=week),
            ),
        ]
        print(f"\nmessage log page (50 rows), median / worst of {args.rounds} runs, in ms:")
        print(f"{'filter':<28} {'first page':>16} {'deep (id < ' + str(middle) + ')':>22}")
        for name, flt in cases:
            first = timed(lambda f=flt: database.run_sync(queries.log_page, f), args.rounds)
            deep = timed(
                lambda f=flt: database.run_sync(queries.log_page, f, before=middle), args.rounds
            )
            print(
                f"{name:<28} {first[0]:>8.2f} / {first[1]:<6.2f} {deep[0]:>10.2f} / "
                f"{deep[1]:<6.2f}  ({len(first[2].rows)} / {len(deep[2].rows)} rows)"
            )
        print("\nother console reads, median / worst in ms:")
        others: list[tuple[str, Callable[[], Any]]] = [
            ("chat window (latest 50)", lambda: database.run_sync(queries.chat_window, 8)),
            (
                "chat window (around a message)",
                lambda: database.run_sync(queries.chat_window, 8, around=middle),
            ),
            (
                "groups page (30 days)",
                lambda: database.run_sync(queries.group_summaries, NOW - timedelta(days=30)),
            ),
            (
                "group chart (30 days)",
                lambda: database.run_sync(queries.daily_outcomes, 8, 30, NOW.date()),
            ),
            ("log filter choices", lambda: database.run_sync(queries.log_choices)),
            ("message count", lambda: database.run_sync(queries.message_count)),
        ]
        for name, fn in others:
            median, worst, _ = timed(fn, args.rounds)
            print(f"{name:<32} {median:>8.2f} / {worst:.2f}")
        database.dispose()


if __name__ == "__main__":
    main()
