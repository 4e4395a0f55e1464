"""The lock test: another connection holds SQLite's write lock (a backup, a CLI command, a
stuck transaction) for 5 s or 15 s while a message is being answered and new events arrive,
through the webhook and the websocket. Feishu redelivers what was not acknowledged. Every
message ends answered exactly once, without a restart: writes wait (busy timeout) and are tried
again, and what still fails is picked up by the sweeper."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.app.jobs import Jobs
from tests.adapters.feishu.conftest import ANSWER, VERIFICATION_TOKEN, FeishuBot, MakeFeishuBot
from tests.adapters.feishu.fake_feishu import load_event
from tests.conftest import write_lock
from tests.fakes import GatedChatModel

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]

REDELIVER_AFTER = 1.0  # Feishu waits longer; the test does not need to
SWEEP = {"stuck_after_seconds": 3, "sweep_interval_seconds": 0.5}


class Timeline:
    """What happened when, relative to the moment the lock was taken; printed by -s."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lines: list[str] = []

    def note(self, what: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self.lines.append(f"{at - self.start:6.2f}s  {what}")

    def __str__(self) -> str:
        return "\n".join(sorted(self.lines, key=lambda line: float(line.split("s")[0])))


async def deliver_until_acked(fb: FeishuBot, mode: str, event: dict[str, Any], t: Timeline) -> int:
    """Deliver as Feishu does: again and again until the bot acknowledges it."""
    name = event["event"]["message"]["message_id"]
    for attempt in range(1, 60):
        sent = time.monotonic()
        if mode == "webhook":
            status = (await fb.post(event)).status_code
        else:
            frame = await fb.fake.push_event(event)
            await fb.fake.wait_for(lambda frame=frame: fb.fake.ack_for(frame) is not None)
            status = int(fb.fake.ack_for(frame)["code"])
        t.note(f"{name} delivery {attempt}: {status} after {time.monotonic() - sent:.2f}s")
        if status == 200:
            return attempt
        await asyncio.sleep(REDELIVER_AFTER)  # Feishu's redelivery delay
    raise AssertionError(f"{name} was never acknowledged")


@pytest.mark.parametrize(
    ("mode", "hold", "database"),
    [
        ("webhook", 5, {}),
        ("websocket", 5, {}),
        ("webhook", 15, {}),
        ("websocket", 15, {}),
        # Writes that give up at once: the sweeper finishes what they left.
        ("webhook", 15, {"attempts": 1}),
    ],
    ids=["webhook-5s", "websocket-5s", "webhook-15s", "websocket-15s", "webhook-15s-sweeper"],
)
async def test_a_held_write_lock_delays_but_never_loses_or_doubles(
    feishu_bot: MakeFeishuBot, mode: str, hold: float, database: dict[str, Any]
) -> None:
    model = GatedChatModel(ANSWER)
    fb = await feishu_bot(mode, llm=model, sections={"queue": SWEEP, "database": database})
    if mode == "websocket":
        await fb.fake.wait_for(lambda: fb.fake.connected)
    jobs = Jobs(fb.bot.services, fb.bot.recovery)
    jobs.start()

    def event(name: str) -> dict[str, Any]:
        return load_event(
            "text_group.json",
            app_id=fb.fake.app_id,
            token=VERIFICATION_TOKEN,
            message_id=name,
            chat_id=f"oc_{name}",
        )

    try:
        # One message is being answered (the model is thinking) when the lock is taken.
        t = Timeline()
        await deliver_until_acked(fb, mode, event("om_before"), t)
        await asyncio.wait_for(model.started.wait(), 10)
        with write_lock(fb.bot.config):
            t = Timeline()
            t.note(f"lock taken for {hold:g}s")
            model.gate.set()  # its answer now has to be stored
            arrivals = [
                asyncio.create_task(deliver_until_acked(fb, mode, event(f"om_during_{i}"), t))
                for i in range(3)
            ]
            await asyncio.sleep(hold)  # the other connection's transaction
            t.note("lock released")
        attempts = await asyncio.wait_for(asyncio.gather(*arrivals), 120)
        names = ["om_before", *(f"om_during_{i}" for i in range(3))]
        async with asyncio.timeout(60):
            while len(fb.fake.sent) < len(names):
                seen = len(fb.fake.sent)
                await fb.fake.wait_for(lambda seen=seen: len(fb.fake.sent) > seen)
        await fb.bot.join()
        views = await fb.messages()
    finally:
        jobs.stop()
    for sent in fb.fake.sent:
        t.note(f"reply to {sent.target} posted", sent.at)
    before = next(v for v in views if v["platform_message_id"] == "om_before")
    recovered = [s["verdict"] for s in before["trace"] if s["name"] == "recovered"]
    print(f"\n[{mode}, lock held {hold:g}s, database {database or 'defaults'}]\n{t}")
    print(f"om_before: {len(model.calls)} model calls in all; recovered: {recovered}")

    assert sorted(sent.target for sent in fb.fake.sent) == sorted(names)  # each once
    assert [v["status"] for v in views] == ["answered"] * len(names)
    assert sorted(v["platform_message_id"] for v in views) == sorted(names)
    assert max(attempts) > 1  # the lock did make Feishu redeliver
    if database.get("attempts") == 1:
        # Its reply could not be stored: picked up again, and the trace says so.
        assert len(recovered) == 1 and "stuck in processing" in recovered[0], before["trace"]
    else:
        assert recovered == []
        assert len(model.calls) == len(names)  # nothing was generated twice
