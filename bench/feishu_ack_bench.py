"""How fast the Feishu adapter acks events while the model is slow (Feishu wants an ack within
3 seconds, and redelivers otherwise).

Runs the real bot (core, SDK, adapter) against the fake Feishu of the tests, on 127.0.0.1,
with a scripted model that takes ``--model-seconds`` per answer. Posts ``--events`` signed
webhook callbacks (``--concurrency`` at a time, each in its own group chat), then pushes the
same number over the websocket gateway, and prints the ack latency of each mode and when the
last reply arrived.

    .venv/bin/python bench/feishu_ack_bench.py --events 40 --concurrency 8 --model-seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.adapter import build_adapters
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.adapters.common import serve
from tests.adapters.feishu.fake_feishu import FakeFeishu, load_event, signed_request
from tests.conftest import write_config
from tests.fakes import ScriptedChatModel

KEY, TOKEN = "bench-encrypt-key", "bench-token"


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (
        f"{name:<10} acks: n={len(ms)} p50={statistics.median(ms):.1f} ms "
        f"p95={p95:.1f} ms max={ms[-1]:.1f} ms"
    )


async def run_mode(mode: str, args: argparse.Namespace, work: Path) -> None:
    fake = FakeFeishu(app_id=f"cli_{uuid.uuid4().hex[:16]}", app_secret="bench-secret")
    async with fake.running():
        config = load_config(
            write_config(
                work,
                {
                    "bot": {"work_dir": str(work / mode)},
                    "queue": {"debounce_seconds": 0, "max_concurrent_conversations": 8},
                    "pipeline": ["normalize", "generate"],
                    "adapters": {
                        "playground": {"enabled": False},
                        "feishu": {
                            "app_id": fake.app_id,
                            "app_secret": fake.app_secret,
                            "encrypt_key": KEY,
                            "verification_token": TOKEN,
                            "mode": mode,
                            "domain": fake.url,
                        },
                    },
                },
                name=f"{mode}.yaml",
            )
        )
        database = Database(config.database_url, config.database)
        database.upgrade()
        model = ScriptedChatModel("An answer.", delay=args.model_seconds)
        adapters = build_adapters(config)
        bot = Bot(build_services(config, llm=model), database, adapters)
        await bot.start()
        started = time.perf_counter()
        acks: list[float] = []
        try:
            events = [
                load_event("text_group.json", token=TOKEN, chat_id=f"oc_bench_{i}")
                for i in range(args.events)
            ]
            if mode == "webhook":
                async with (
                    serve(Starlette(routes=adapters[0].routes)) as port,
                    httpx.AsyncClient(timeout=30) as client,
                ):
                    url = f"http://127.0.0.1:{port}/feishu/events"
                    limit = asyncio.Semaphore(args.concurrency)

                    async def post(event: dict[str, Any]) -> None:
                        async with limit:
                            headers, body = signed_request(event, KEY)
                            sent = time.perf_counter()
                            response = await client.post(url, content=body, headers=headers)
                            acks.append(time.perf_counter() - sent)
                            assert response.status_code == 200, response.text

                    await asyncio.gather(*(post(e) for e in events))
                    await fake.wait_for(lambda: len(fake.sent) == args.events)
            else:
                await fake.wait_for(lambda: fake.connected)
                pushed: dict[str, float] = {}
                for event in events:
                    frame = await fake.push_event(event)
                    pushed[frame] = time.perf_counter()
                await fake.wait_for(lambda: len(fake.acks) == args.events)
                acks = [fake.ack_times[frame] - pushed_at for frame, pushed_at in pushed.items()]
                await fake.wait_for(lambda: len(fake.sent) == args.events)
            last_reply = time.perf_counter() - started
        finally:
            await bot.stop()
            database.dispose()
    print(summary(mode, acks))
    print(
        f"{'':<10} last of {args.events} replies after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, 8 groups at a time)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("webhook", "websocket"):
            await run_mode(mode, args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
