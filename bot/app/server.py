"""The one ASGI app: /healthz, /metrics, and every adapter's routes (playground, webhooks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.app.jobs import Jobs
from bot.llm.protocol import HealthReporting
from bot.runtime import Bot


def create_app(bot: Bot, jobs: Jobs | None = None) -> Starlette:
    """The daemon's app: starting it starts the bot, then its scheduled jobs."""

    async def healthz(request: Request) -> JSONResponse:
        try:
            await asyncio.to_thread(bot.db.check_schema)
        except Exception as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
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
    ]
    for adapter in bot.adapters.values():
        routes.extend(adapter.routes)
    return Starlette(routes=routes, lifespan=lifespan)
