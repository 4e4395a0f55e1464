"""The one ASGI app: /healthz, /metrics, the admin console, and every adapter's routes
(the playground's API, webhooks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.app.console.routes import Console
from bot.app.jobs import Jobs
from bot.runtime import Bot


def create_app(bot: Bot, jobs: Jobs | None = None) -> Starlette:
    """The daemon's app: starting it starts the bot, then its scheduled jobs."""

    async def healthz(request: Request) -> JSONResponse:
        try:
            await asyncio.to_thread(bot.db.check_schema)
        except Exception as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse(
            {"status": "ok", "adapters": sorted(bot.adapters), "model": bot.services.llm.name}
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await bot.start()
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            if jobs is not None:
                jobs.stop()
            await bot.stop()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *Console(bot, jobs).routes,
    ]
    for adapter in bot.adapters.values():
        routes.extend(adapter.routes)
    return Starlette(routes=routes, lifespan=lifespan)
