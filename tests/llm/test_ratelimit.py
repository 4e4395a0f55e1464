"""Requests- and tokens-per-minute budgets with an injected clock."""

from __future__ import annotations

import pytest

from bot.llm.protocol import RateLimited
from bot.llm.ratelimit import RateLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_requests_per_minute_wait_for_the_oldest_to_expire() -> None:
    clock = Clock()
    limiter = RateLimiter(2, None, clock=clock, sleep=clock.sleep)
    await limiter.acquire(10, max_wait=60)
    clock.now += 15
    await limiter.acquire(10, max_wait=60)
    await limiter.acquire(10, max_wait=60)  # waits until the first is 60 s old
    assert clock.slept == [45.0]


async def test_tokens_per_minute_and_settle() -> None:
    clock = Clock()
    limiter = RateLimiter(None, 1000, clock=clock, sleep=clock.sleep)
    use = await limiter.acquire(900, max_wait=60)
    limiter.settle(use, 300)  # the server reported fewer tokens than estimated
    await limiter.acquire(600, max_wait=0)
    assert clock.slept == []
    with pytest.raises(RateLimited, match="longer than max_wait_seconds"):
        await limiter.acquire(500, max_wait=5)
    await limiter.acquire(500, max_wait=60)
    assert clock.slept == [60.0]


async def test_one_request_bigger_than_the_budget_is_refused() -> None:
    limiter = RateLimiter(None, 100)
    with pytest.raises(RateLimited, match="more than tokens_per_minute"):
        await limiter.acquire(101, max_wait=60)
