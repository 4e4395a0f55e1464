"""Requests from the internet: bounded bodies, and refusals that tell an attacker nothing.

Every refusal of a request that failed authentication (signature, token, timestamp, key,
decryption) gets the same status and the same body, whatever failed, so the answers cannot be
used as an oracle (a padding oracle decrypts captured events byte by byte). The reason goes to
the log, once per request, as one WARNING line without a traceback, and at most ``LOG_BURST``
lines a minute per route, so unauthenticated traffic cannot flood the log.

Bodies are bounded while they are read, never after: ``BodyLimit`` caps every route of the
server (413 before the app reads past the cap), ``read_body`` caps one route's own body.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
LOG_BURST = 20  # refusal lines per route per minute; then one summary line a minute


class BodyTooLarge(Exception):
    pass


def _declared_length(headers: Any) -> int | None:
    """The Content-Length header as a number; None when absent, -1 when it is not a number
    (``"²".isdigit()`` is true, so digits are matched, not asked)."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    return int(declared) if re.fullmatch(r"[0-9]{1,20}", declared) else -1


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read in pieces and abandoned as soon as it passes ``limit`` bytes
    (a 100 MB POST must not cost 100 MB of memory)."""
    declared = _declared_length(request.headers)
    if declared is not None and not 0 <= declared <= limit:
        raise BodyTooLarge(f"content-length {request.headers['content-length']!r} over {limit}")
    received = bytearray()
    try:
        async for piece in request.stream():
            received += piece
            if len(received) > limit:
                raise BodyTooLarge(f"body over {limit} bytes")
    except ClientDisconnect:
        raise BodyTooLarge("the client went away mid-body") from None
    return bytes(received)


class BodyLimit:
    """ASGI middleware: every request body on every route is capped at ``max_bytes``. A
    declared Content-Length over the cap is refused (413) before the app runs; a chunked body
    is counted as it arrives, and when it passes the cap the client gets the 413 and the app
    sees the client go away (``read_body`` turns that into BodyTooLarge)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        declared = _declared_length(headers)
        if declared is not None and not 0 <= declared <= self.max_bytes:
            await refusal(TOO_LARGE)(scope, receive, send)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await refusal(TOO_LARGE)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own answer, after the client got the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not refused:
                raise


def stale_timestamp(stamp: str, window: float) -> str | None:
    """Why a request's timestamp (Unix seconds, as the platform signs it) is refused, or None:
    not plain digits ("nan", "1e9", "-5", "²" all pass ``float`` or ``isdigit``), or further than
    ``window`` seconds from now (a replay)."""
    if not re.fullmatch(r"[0-9]{1,12}", stamp):
        return "bad timestamp"
    age = time.time() - int(stamp)
    if abs(age) > window:
        return f"stale request: timestamp {age:+.0f}s from now, outside the {window:g}s window"
    return None


class RefusalLog:
    """Logs refusals at WARNING, a bounded number a minute: "<platform> <what>: refused a
    request from <client>: <reason>"."""

    def __init__(self, platform: str, what: str = "webhook", burst: int = LOG_BURST) -> None:
        self.what = f"{platform} {what}"
        self.burst = burst
        self._lock = threading.Lock()
        self._window = 0.0
        self._count = 0
        self._dropped = 0

    def __call__(self, request: HTTPConnection, reason: str) -> None:
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        with self._lock:
            if now - self._window >= 60:
                if self._dropped:
                    log.warning(
                        "%s: %d more refusals in the last minute were not logged",
                        self.what,
                        self._dropped,
                    )
                self._window, self._count, self._dropped = now, 0, 0
            self._count += 1
            if self._count > self.burst:
                self._dropped += 1
                return
        log.warning("%s: refused a request from %s: %s", self.what, client, reason)


UNAUTHORIZED = 401
FORBIDDEN = 403
BAD_REQUEST = 400
TOO_LARGE = 413
UNAVAILABLE = 503
_MESSAGES = {
    UNAUTHORIZED: "refused",
    FORBIDDEN: "forbidden",
    BAD_REQUEST: "bad request",
    TOO_LARGE: "request too large",
    UNAVAILABLE: "try again later",
}


def refusal(status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one body every refusal with this status gets, whatever the reason."""
    return JSONResponse(
        {"code": status, "msg": _MESSAGES[status]}, status_code=status, headers=headers
    )
