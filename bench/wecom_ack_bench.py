"""How fast the WeCom adapter answers the console's URL check and acks callbacks while the model
is slow (WeCom gives the URL check one second and a callback five, and retries otherwise).

Runs the real bot (core, wechatpy, adapter) against the fake WeCom of the tests, on 127.0.0.1,
with a scripted model that takes ``--model-seconds`` per answer. Sends ``--checks`` URL checks,
then posts ``--events`` encrypted app callbacks (``--concurrency`` at a time, each from its own
member), and prints the latency of each and when the last reply arrived.

    nice .venv/bin/python bench/wecom_ack_bench.py --events 40 --concurrency 8 --model-seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.adapter import build_adapters
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.adapters.common import serve
from tests.adapters.wecom.conftest import make_fake, wecom_section
from tests.adapters.wecom.fake_wecom import app_callback, msg_id, text_xml, url_check
from tests.conftest import write_config
from tests.fakes import ScriptedChatModel


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (
        f"{name:<12} n={len(ms)} p50={statistics.median(ms):.1f} ms "
        f"p95={p95:.1f} ms max={ms[-1]:.1f} ms"
    )


async def run(args: argparse.Namespace, work: Path) -> None:
    fake, app_keys, bot_keys, robot_key = make_fake()
    os.environ["WECOM_DOCS_SECRET"] = fake.secret
    async with fake.running():
        config = load_config(
            write_config(
                work,
                {
                    "bot": {"work_dir": str(work / "state")},
                    "queue": {"debounce_seconds": 0, "max_concurrent_conversations": 8},
                    "pipeline": ["normalize", "generate"],
                    "adapters": {
                        "playground": {"enabled": False},
                        "wecom": wecom_section(fake, app_keys, bot_keys, robot_key),
                    },
                },
            )
        )
        database = Database(config.database_url)
        database.upgrade()
        model = ScriptedChatModel("一个回答。", delay=args.model_seconds)
        adapters = build_adapters(config)
        bot = Bot(build_services(config, llm=model), database, adapters)
        await bot.start()
        checks: list[float] = []
        acks: list[float] = []
        try:
            async with (
                serve(Starlette(routes=adapters[0].routes)) as port,
                httpx.AsyncClient(timeout=30) as client,
            ):
                url = f"http://127.0.0.1:{port}/wecom/docs"
                for i in range(args.checks):
                    query = url_check(app_keys, f"echo-{i}")
                    sent = time.perf_counter()
                    response = await client.get(url, params=query)
                    checks.append(time.perf_counter() - sent)
                    assert response.text == f"echo-{i}", response.text
                limit = asyncio.Semaphore(args.concurrency)
                started = time.perf_counter()

                async def post(i: int) -> None:
                    xml = text_xml(fake.corp_id, f"user{i}", "怎么安装 mmdet？", msg_id())
                    async with limit:
                        query, body = app_callback(app_keys, xml)
                        sent = time.perf_counter()
                        response = await client.post(url, params=query, content=body)
                        acks.append(time.perf_counter() - sent)
                        assert response.status_code == 200, response.text

                await asyncio.gather(*(post(i) for i in range(args.events)))
                await fake.wait_for(lambda: len(fake.sent) == args.events)
                last_reply = time.perf_counter() - started
        finally:
            await bot.stop()
            database.dispose()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(summary("URL checks", checks))
    print(summary("callbacks", acks))
    print(
        f"{'':<12} last of {args.events} replies after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, 8 conversations at a time)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
