"""The one ASGI app: /healthz, /metrics, every adapter's public routes (webhooks), and the
admin pages (the console, the playground's API) behind the admin check
(bot/app/console/auth.py), on the same port or on ``server.admin_port``. Every request body on
every route is bounded while it is read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.common.webhook import BodyLimit
from bot.app.console.auth import AdminAccess, AdminOnly
from bot.app.console.routes import Console
from bot.app.jobs import Jobs
from bot.llm.protocol import HealthReporting
from bot.runtime import Bot
from bot.storage.db import SchemaError

log = logging.getLogger(__name__)


class ByPort:
    """Requests that arrived on ``admin_port`` go to the admin app, the rest (and the
    lifespan) to the public one: one server, one lifespan, two sockets."""

    def __init__(self, public: ASGIApp, admin: ASGIApp, admin_port: int) -> None:
        self.public, self.admin, self.admin_port = public, admin, admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server and server[1] == self.admin_port:
            await self.admin(scope, receive, send)
        else:
            await self.public(scope, receive, send)


def create_app(bot: Bot, jobs: Jobs | None = None) -> ASGIApp:
    """The daemon's app: starting it starts the bot, then its scheduled jobs."""
    settings = bot.config.server
    access = AdminAccess.decide(settings, bot.adapters.values())

    async def healthz(request: Request) -> JSONResponse:
        try:
            await asyncio.to_thread(bot.db.check_schema)
        except SchemaError as exc:  # its text names the database without a password
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        except Exception as exc:  # a driver's text may hold a host or user: only the kind
            error = f"database: {type(exc).__name__}"
            return JSONResponse({"status": "error", "error": error}, status_code=503)
        llm = bot.services.llm
        adapters = sorted(bot.adapters)
        body: dict[str, Any] = {"status": "ok", "adapters": adapters, "model": llm.name}
        process = llm.health() if isinstance(llm, HealthReporting) else {}
        if process:
            body["model_process"] = process
            if process["state"] == "failed":
                body["status"] = "degraded"  # up, answering only what needs no model
        return JSONResponse(body)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if access.locked:
            log.warning("%s", access.locked)
        await bot.start()
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            if jobs is not None:
                jobs.stop()
            await bot.stop()

    public: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    playground: list[BaseRoute] = []
    for adapter in bot.adapters.values():
        public.extend(adapter.routes)
        playground.extend(adapter.admin_routes)
    admin: list[BaseRoute] = list(Console(bot, jobs).routes)  # guarded by their own mounts
    if playground:
        admin.append(
            Mount("", routes=playground, middleware=[Middleware(AdminOnly, access=access)])
        )
    app: ASGIApp
    if settings.admin_port is None:
        app = Starlette(routes=[*public, *admin], lifespan=lifespan)
    else:
        app = ByPort(
            Starlette(routes=public, lifespan=lifespan),
            Starlette(routes=admin),
            settings.admin_port,
        )
    return BodyLimit(app, settings.max_body_bytes)
