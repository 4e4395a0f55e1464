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
import sys
import tempfile
import time
from pathlib import Path

import httpx
from acks import arguments, latency, running_bot
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.adapters.common import serve
from tests.adapters.wecom.conftest import make_fake, wecom_section
from tests.adapters.wecom.fake_wecom import app_callback, msg_id, text_xml, url_check


async def run(args: argparse.Namespace, work: Path) -> None:
    fake, app_keys, bot_keys, robot_key = make_fake()
    os.environ["WECOM_DOCS_SECRET"] = fake.secret
    async with fake.running():
        section = wecom_section(fake, app_keys, bot_keys, robot_key)
        checks: list[float] = []
        acks: list[float] = []
        async with (
            running_bot(work, "wecom", section, "一个回答。", args.model_seconds) as adapter,
            serve(Starlette(routes=adapter.routes)) as port,
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
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'URL checks':<12} {latency(checks)}")
    print(f"{'callbacks':<12} {latency(acks)}")
    print(
        f"{'':<12} last of {args.events} replies after {last_reply:.2f} s "
        f"(model {args.model_seconds:g} s each, 8 conversations at a time)"
    )


async def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--checks", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(args, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
