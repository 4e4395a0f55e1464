"""Fuzz every HTTP route of a running daemon with many generated requests (10,000 per route by
default) and print, per route, requests/s, the answers' statuses, the daemon's log lines and
its resident memory (at the start, the peak, and at the end).

The same generators and checks as `make test` (tests/contracts/fuzz.py: no 5xx, a refusal
stores nothing, no secret in an answer, no ERROR line or traceback in the daemon's log,
warnings within the refusal log's cap), with random rather than fixed examples, over real HTTP
to `huixiangdou-bot run` in a subprocess: the Feishu adapter in webhook mode (against the fake
Feishu of the tests, served by this process) and the playground behind an admin token. Messages
that get through are stored and left unanswered (pipeline: tests.plugins:StaySilent).

    nice .venv/bin/python bench/fuzz_webhooks.py [--examples 10000] [--routes feishu,healthz]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import strategies as st
from sqlalchemy import text

from bot.storage.db import Database
from tests.adapters.feishu.fake_feishu import FakeFeishu
from tests.adapters.feishu.test_contract import FeishuWebhook
from tests.adapters.test_route_fuzz import TOKEN, message_paths, plain_gets, posted_messages
from tests.contracts.fuzz import HEADER_TEXT, FuzzReport, FuzzRequest, fuzz, webhook_requests
from tests.daemon import Daemon, daemon_config, free_port

KEY, VERIFICATION = "bench-encrypt-key", "bench-verification-token"
COUNT = text("SELECT count(*) FROM messages")


class Memory:
    """The daemon's resident memory, sampled every 50 ms while a route is fuzzed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.peak = self.end = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.end = self.rss()
        self.peak = max(self.peak, self.end)

    def summary(self) -> str:
        mib = 2**20
        return (
            f"daemon RSS {self.start / mib:.0f} MiB at the start, peak {self.peak / mib:.0f} "
            f"(+{(self.peak - self.start) / mib:.0f}), {self.end / mib:.0f} at the end"
        )


def credentials() -> st.SearchStrategy[FuzzRequest]:
    scheme = st.sampled_from(["Bearer", "Basic", "bearer", "Token", ""])
    value = st.builds(lambda s, v: f"{s} {v}".strip(), scheme, HEADER_TEXT) | HEADER_TEXT
    return value.map(
        lambda v: FuzzRequest("credentials", headers={"Authorization": v}, path="/console/log")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument(
        "--routes", default="feishu,messages,message,healthz,metrics,admin", help="comma list"
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    fake = FakeFeishu(app_id=f"cli_{uuid.uuid4().hex[:16]}", app_secret="bench-app-secret")
    with tempfile.TemporaryDirectory() as tmp:
        async with fake.running():
            port = free_port()
            os.environ["HUIXIANGDOU_ADMIN_TOKEN"] = TOKEN
            os.environ["FEISHU_APP_SECRET"] = fake.app_secret
            config = daemon_config(
                Path(tmp),
                port,
                pipeline=["tests.plugins:StaySilent"],
                # A remote model that is never called: no weights to load at start-up.
                llm={"backend": "openai", "remote": {"base_url": "http://127.0.0.1:9/v1"}},
                server={"port": port, "admin_token": "${HUIXIANGDOU_ADMIN_TOKEN}"},
                adapters={
                    "feishu": {
                        "app_id": fake.app_id,
                        "app_secret": "${FEISHU_APP_SECRET}",
                        "encrypt_key": KEY,
                        "verification_token": VERIFICATION,
                        "mode": "webhook",
                        "domain": fake.url,
                    }
                },
            )
            daemon = await asyncio.to_thread(Daemon(config, port).start)
            assert daemon.process is not None
            database = Database(f"sqlite:///{Path(tmp) / 'work' / 'bot.db'}")

            async def stored() -> int:
                return int(await database.run(lambda s: s.execute(COUNT).scalar_one()))

            secrets = (TOKEN, fake.app_secret, KEY, VERIFICATION, fake.tenant_token)
            routes: dict[str, tuple[str, str, st.SearchStrategy[FuzzRequest]]] = {
                "feishu": (
                    "POST",
                    "/feishu/events",
                    webhook_requests(FeishuWebhook(fake.app_id, KEY, VERIFICATION)),
                ),
                "messages": ("POST", "/api/messages", posted_messages()),
                "message": ("GET", "/api/messages/{id}", message_paths()),
                "healthz": ("GET", "/healthz", plain_gets("/healthz")),
                "metrics": ("GET", "/metrics", plain_gets("/metrics")),
                "admin": ("GET", "/console/log", credentials()),
            }
            failed = False
            try:
                for name in args.routes.split(","):
                    method, path, requests = routes[name]
                    lines_before = len(daemon.log.read_text().splitlines())
                    with Memory(daemon.process.pid) as memory:
                        try:
                            report: FuzzReport = await fuzz(
                                daemon.url,
                                method,
                                path,
                                requests,
                                examples=args.examples,
                                stored=stored if method == "POST" else None,
                                secrets=secrets,
                                derandomize=False,
                                # The playground behind the token; the admin route fuzzes it.
                                default_headers=None
                                if name in ("feishu", "admin")
                                else {"Authorization": f"Bearer {TOKEN}"},
                            )
                        except AssertionError as exc:
                            failed = True
                            print(f"{name}: FAILED: {exc}")
                            continue
                    log = daemon.log.read_text().splitlines()[lines_before:]
                    access = sum('HTTP/1.1" ' in line for line in log)  # uvicorn's access log
                    report.log_lines = len(log) - access
                    report.warnings = sum(" WARNING " in line for line in log)
                    report.noisy_lines = [
                        line
                        for line in log
                        if " ERROR " in line or "Traceback (most recent call last)" in line
                    ]
                    try:
                        report.assert_quiet()
                        if name == "admin":  # no generated credential gets in
                            assert set(report.statuses) == {401}, report.summary()
                    except AssertionError as exc:
                        failed = True
                        print(f"{name}: FAILED: {exc}")
                    print(report.summary())
                    print(f"    kinds {dict(report.kinds)}; {memory.summary()}")
                    print(f"    and {access} access log lines (one per request, at INFO)")
            finally:
                await asyncio.to_thread(daemon.stop)
                database.dispose()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    asyncio.run(main())
