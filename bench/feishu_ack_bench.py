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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from acks import arguments, latency, running_bot
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.adapters.common import serve
from tests.adapters.feishu.fake_feishu import FakeFeishu, load_event, signed_request

KEY, TOKEN = "bench-encrypt-key", "bench-token"


async def run_mode(mode: str, args: argparse.Namespace, work: Path) -> None:
    fake = FakeFeishu.fresh()
    async with fake.running():
        section = {
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "encrypt_key": KEY,
            "verification_token": TOKEN,
            "mode": mode,
            "domain": fake.url,
        }
        bot = running_bot(work, "feishu", section, "An answer.", args.model_seconds, mode)
        async with bot as adapter:
            started = time.perf_counter()
            acks: list[float] = []
            events = [
                load_event("text_group.json", token=TOKEN, chat_id=f"oc_bench_{i}")
                for i in range(args.events)
            ]
            if mode == "webhook":
                async with (
                    serve(Starlette(routes=adapter.routes)) as port,
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
    print(f"{mode:<10} acks: {latency(acks)}")
    print(
        f"{'':<10} last of {args.events} replies after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, 8 groups at a time)"
    )


async def main() -> None:
    args = arguments(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("webhook", "websocket"):
            await run_mode(mode, args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
