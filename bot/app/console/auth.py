"""Who may use the admin pages: the console (/console) and the playground's API (/api/...).
One middleware, ``AdminOnly``, sits in front of every admin route (bot/app/server.py and the
console's routes put it there), deciding by one policy, ``AdminAccess``:

- A token is required when the admin routes can be reached from beyond this machine (they
  listen on an address that is not loopback) or when a real platform adapter is enabled: its
  users' messages are in the database, and a reverse proxy in front of a webhook makes every
  request look local, so the client's address proves nothing then.
- With ``server.admin_token`` set, a request needs it, as ``Authorization: Bearer <token>``
  (compared in constant time) or as the cookie the login form sets (derived from the token).
- Without one: where a token is required, every request is refused (403), the daemon logs why
  at start-up and ``doctor`` warns (the bot itself keeps answering the platforms); otherwise
  only clients on this machine (loopback) get in.
- A form posted from another site is refused either way (its Origin differs), so a page
  elsewhere cannot make an admin's browser teach the bot.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.common.webhook import RefusalLog
from bot.adapter import Adapter
from bot.config import ServerSettings

COOKIE = "hxd_console"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, so the cookie is not the token and
    a new token signs everyone out."""
    return hmac.new(token.encode(), b"huixiangdou-bot console", hashlib.sha256).hexdigest()


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: assume it is reachable from elsewhere


@dataclass(frozen=True, slots=True)
class AdminAccess:
    """The policy, decided once at start-up from bot.yaml and the enabled adapters."""

    token: str = ""  # "" when none is configured
    locked: str = ""  # why every request is refused; "" when not locked

    @classmethod
    def decide(cls, server: ServerSettings, adapters: Iterable[Adapter]) -> AdminAccess:
        if server.token:
            return cls(token=server.token)
        host = server.host if server.admin_port is None else server.admin_host
        real = sorted(adapter.name for adapter in adapters if not adapter.simulated)
        if real:
            why = f"a real platform adapter is enabled ({', '.join(real)})"
        elif not is_loopback(host):
            why = f"they listen on {host}, beyond this machine"
        else:
            return cls()
        return cls(
            locked=f"the admin pages (console, playground) are locked: {why} and "
            "server.admin_token is not set. Set it from the environment (admin_token: "
            "${HUIXIANGDOU_ADMIN_TOKEN}, a long random value) or turn the playground off"
        )


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _has_token(request: Request, token: str) -> bool:
    given = request.cookies.get(COOKIE, "")
    if hmac.compare_digest(given.encode(), session_value(token).encode()):
        return True
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        bearer.strip().encode(), token.encode()
    )


def refusal(request: Request, access: AdminAccess) -> tuple[Response, str] | None:
    """What to answer instead, and why (for the log), when this request may not use the admin
    pages; None when it may."""
    if request.method not in SAFE_METHODS and not _same_origin(request):
        return PlainTextResponse("refused: a cross-site request", 403), "a cross-site request"
    if access.token:
        if _has_token(request, access.token):
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
            return login, "not logged in"
        answer = PlainTextResponse("refused: the admin token is required", status_code=401)
        return answer, "no or a wrong admin token"
    if access.locked:
        answer = PlainTextResponse(f"refused: {access.locked}", status_code=403)
        return answer, "locked: server.admin_token is not set"
    if is_loopback(request.client.host if request.client else None):
        return None
    answer = PlainTextResponse(
        "refused: without server.admin_token the admin pages answer this machine only",
        status_code=403,
    )
    return answer, "not from this machine, and no admin token is set"


class AdminOnly:
    """ASGI middleware for the admin routes (``Mount(..., middleware=[...])``)."""

    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self.app = app
        self.access = access
        self._log_refusal = RefusalLog("admin", "pages")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            refused = refusal(request, self.access)
            if refused is not None:
                answer, why = refused
                if answer.status_code != 303:
                    self._log_refusal(request, why)
                await answer(scope, receive, send)
                return
        elif scope["type"] == "websocket":  # no admin page speaks it: refused
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/console/"
    return target
