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
import sys
import tempfile
import time
from pathlib import Path

from acks import arguments, latency, running_bot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.adapters.dingtalk.fake_dingtalk import FakeDingTalk


async def run(args: argparse.Namespace, work: Path) -> None:
    fake = FakeDingTalk.fresh()
    async with fake.running():
        section = {
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "gateway_endpoint": fake.url,
            "openapi_endpoint": fake.url,
        }
        async with running_bot(work, "dingtalk", section, "An answer.", args.model_seconds):
            started = time.perf_counter()
            pushed: dict[str, float] = {}
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
    acks = [fake.ack_times[frame] - at for frame, at in pushed.items()]
    assert all(fake.ack_for(frame)["code"] == 200 for frame in pushed)  # type: ignore[index]
    print(f"stream acks: {latency(acks)}")
    print(
        f"last of {args.events} answers after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, {args.concurrency} messages at a time, "
        "8 groups answered at a time)"
    )


async def push(fake: FakeDingTalk, message: dict[str, object]) -> tuple[str, float]:
    at = time.perf_counter()
    return await fake.push_message(message), at


async def main() -> None:
    args = arguments(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
