"""How fast the DingTalk adapter acks robot messages while the model is slow (the stream
gateway sends a message again when its ack is late).

Runs the real bot (core, dingtalk-stream SDK, adapter) against the fake DingTalk of the tests,
on 127.0.0.1, with a scripted model that takes ``--model-seconds`` per answer. Pushes
``--events`` robot messages over the stream in waves of ``--concurrency`` at once (each in its
own group), and prints the ack latency (frame pushed -> ack received by the gateway) and when
the last answer arrived through the sessionWebhook.

    .venv/bin/python bench/dingtalk_ack_bench.py --events 40 --concurrency 8 --model-seconds 2
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.adapter import build_adapters
from bot.app.services import build_services
from bot.config import load_config
from bot.runtime import Bot
from bot.storage.db import Database
from tests.adapters.dingtalk.fake_dingtalk import FakeDingTalk
from tests.conftest import write_config
from tests.fakes import ScriptedChatModel


def summary(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (
        f"stream acks: n={len(ms)} p50={statistics.median(ms):.1f} ms "
        f"p95={p95:.1f} ms max={ms[-1]:.1f} ms"
    )


async def run(args: argparse.Namespace, work: Path) -> None:
    fake = FakeDingTalk(client_id=f"ding{uuid.uuid4().hex[:16]}", client_secret="bench-secret")
    async with fake.running():
        config = load_config(
            write_config(
                work,
                {
                    "bot": {"work_dir": str(work / "bot")},
                    "queue": {"debounce_seconds": 0, "max_concurrent_conversations": 8},
                    "pipeline": ["normalize", "generate"],
                    "adapters": {
                        "playground": {"enabled": False},
                        "dingtalk": {
                            "client_id": fake.client_id,
                            "client_secret": fake.client_secret,
                            "gateway_endpoint": fake.url,
                            "openapi_endpoint": fake.url,
                        },
                    },
                },
            )
        )
        database = Database(config.database_url)
        database.upgrade()
        model = ScriptedChatModel("An answer.", delay=args.model_seconds)
        bot = Bot(build_services(config, llm=model), database, build_adapters(config))
        await bot.start()
        started = time.perf_counter()
        pushed: dict[str, float] = {}
        try:
            await fake.wait_for(lambda: fake.connected)
            messages = [
                fake.message(conversationId=f"cidBench{i}==", text=f"Question {i}?")
                for i in range(args.events)
            ]
            for first in range(0, len(messages), args.concurrency):
                wave = messages[first : first + args.concurrency]
                for frame_id, at in await asyncio.gather(*(push(fake, m) for m in wave)):
                    pushed[frame_id] = at
                await fake.wait_for(lambda: all(f in fake.ack_times for f in pushed))
            await fake.wait_for(lambda: len(fake.sent) == args.events, within=600)
            last_reply = time.perf_counter() - started
        finally:
            await bot.stop()
            database.dispose()
    acks = [fake.ack_times[frame] - at for frame, at in pushed.items()]
    assert all(fake.ack_for(frame)["code"] == 200 for frame in pushed)  # type: ignore[index]
    print(summary(acks))
    print(
        f"last of {args.events} answers after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, {args.concurrency} messages at a time, "
        "8 groups answered at a time)"
    )


async def push(fake: FakeDingTalk, message: dict[str, object]) -> tuple[str, float]:
    at = time.perf_counter()
    return await fake.push_message(message), at


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
