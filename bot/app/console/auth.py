"""Who may use the admin console: one middleware in front of every console route.

With ``server.admin_token`` set, a request needs the token, as ``Authorization: Bearer
<token>`` or as the cookie the login form sets; without one, only browsers on this machine
(loopback) get in. A form posted from another site is refused either way (its Origin differs),
so a page elsewhere cannot make an admin's browser teach the bot.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "hxd_console"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, so the cookie is not the token and
    a new token signs everyone out."""
    return hmac.new(token.encode(), b"huixiangdou-bot console", hashlib.sha256).hexdigest()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def refusal(request: Request, token: str) -> Response | None:
    """Why this request may not use the console (a response to send instead), or None."""
    if request.method not in SAFE_METHODS and not _same_origin(request):
        return PlainTextResponse("refused: a cross-site request", status_code=403)
    if token:
        given = request.cookies.get(COOKIE, "")
        expected = session_value(token)
        bearer = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), expected.encode()) or (
            bearer.startswith("Bearer ")
            and hmac.compare_digest(bearer.removeprefix("Bearer ").encode(), token.encode())
        ):
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
        return PlainTextResponse("refused: the admin token is required", status_code=401)
    if _is_loopback(request.client.host if request.client else None):
        return None
    return PlainTextResponse(
        "refused: without server.admin_token the console answers this machine only",
        status_code=403,
    )


class AdminOnly:
    """ASGI middleware for the console's routes (``Mount(..., middleware=[...])``)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = refusal(Request(scope), self.token)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/console/"
    return target
