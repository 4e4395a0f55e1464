"""Webhook requests from the internet: bounded bodies, and refusals that tell an attacker
nothing.

Every refusal of a request that failed authentication (signature, token, timestamp, key,
decryption) gets the same status and the same body, whatever failed, so the answers cannot be
used as an oracle (a padding oracle decrypts captured events byte by byte). The reason goes to
the log, once per request and without a traceback, and at most ``LOG_BURST`` lines a minute
per platform, so unauthenticated traffic cannot flood the log.
"""

from __future__ import annotations

import logging
import threading
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
LOG_BURST = 20  # refusal lines per platform per minute; then one summary line a minute


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read in pieces and abandoned as soon as it passes ``limit`` bytes
    (a 100 MB POST must not cost 100 MB of memory)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"content-length {declared} over {limit}")
    received = bytearray()
    try:
        async for piece in request.stream():
            received += piece
            if len(received) > limit:
                raise BodyTooLarge(f"body over {limit} bytes")
    except ClientDisconnect:
        raise BodyTooLarge("the client went away mid-body") from None
    return bytes(received)


class RefusalLog:
    """Logs refusals at WARNING, a bounded number a minute."""

    def __init__(self, platform: str, burst: int = LOG_BURST) -> None:
        self.platform = platform
        self.burst = burst
        self._lock = threading.Lock()
        self._window = 0.0
        self._count = 0
        self._dropped = 0

    def __call__(self, request: Request, reason: str) -> None:
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        with self._lock:
            if now - self._window >= 60:
                if self._dropped:
                    log.warning(
                        "%s webhook: %d more refusals in the last minute were not logged",
                        self.platform,
                        self._dropped,
                    )
                self._window, self._count, self._dropped = now, 0, 0
            self._count += 1
            if self._count > self.burst:
                self._dropped += 1
                return
        log.warning("%s webhook: refused a request from %s: %s", self.platform, client, reason)


UNAUTHORIZED = 401
BAD_REQUEST = 400
TOO_LARGE = 413
UNAVAILABLE = 503
_MESSAGES = {
    UNAUTHORIZED: "refused",
    BAD_REQUEST: "bad request",
    TOO_LARGE: "request too large",
    UNAVAILABLE: "try again later",
}


def refusal(status: int) -> JSONResponse:
    """The one body every refusal with this status gets, whatever the reason."""
    return JSONResponse({"code": status, "msg": _MESSAGES[status]}, status_code=status)
