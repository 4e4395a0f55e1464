"""Requests- and tokens-per-minute limits for a remote model, as the provider counts them.

A sliding window over the last 60 seconds: a call waits until both budgets have room, but never
longer than ``max_wait``; past that it raises ``RateLimited`` at once, so a hybrid model can send
the call to its other backend instead of keeping a group waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.llm.protocol import RateLimited

WINDOW_SECONDS = 60.0


@dataclass(slots=True)
class _Use:
    at: float
    tokens: int


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._clock = clock
        self._sleep = sleep
        self._uses: deque[_Use] = deque()
        self._lock = asyncio.Lock()

    def _forget_old(self, now: float) -> None:
        while self._uses and self._uses[0].at <= now - WINDOW_SECONDS:
            self._uses.popleft()

    def _wait_needed(self, now: float, tokens: int) -> float:
        waits = [0.0]
        if self.rpm is not None and len(self._uses) >= self.rpm:
            waits.append(self._uses[-self.rpm].at + WINDOW_SECONDS - now)
        if self.tpm is not None:
            used = sum(use.tokens for use in self._uses)
            excess = used + tokens - self.tpm
            for use in self._uses:  # the oldest uses expire first
                if excess <= 0:
                    break
                excess -= use.tokens
                waits.append(use.at + WINDOW_SECONDS - now)
        return max(waits)

    async def acquire(self, tokens: int, max_wait: float) -> _Use:
        """Wait for room for one request of ``tokens`` tokens; returns a handle for
        :meth:`settle`. Raises ``RateLimited`` if that would take longer than ``max_wait``."""
        if self.tpm is not None and tokens > self.tpm:
            raise RateLimited(
                f"one request of about {tokens} tokens is more than tokens_per_minute ({self.tpm})"
            )
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                self._forget_old(now)
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    use = _Use(now, tokens)
                    self._uses.append(use)
                    return use
                if waited + wait > max_wait:
                    raise RateLimited(
                        f"over the per-minute budget (requests {self.rpm}, tokens {self.tpm}) "
                        f"for another {wait:.0f}s, longer than max_wait_seconds ({max_wait:g})"
                    )
                await self._sleep(wait)
                waited += wait

    def settle(self, use: _Use, tokens: int) -> None:
        """Replace a request's estimated tokens by what the server reported using."""
        use.tokens = tokens
