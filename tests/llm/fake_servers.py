"""Fake remote services on 127.0.0.1 speaking the real wire formats: an OpenAI-compatible chat
server (JSON and server-sent events) and a Serper-compatible search API with web pages.

Each request to the chat server takes the next step of a script (an error status, a slow reply,
a stream), so a test says exactly what the server does, and reads back what it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in this event loop; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Step:
    """What the chat server does with one request."""

    status: int = 200
    text: str = "remote answer"
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering
    pieces: list[str] | None = None  # stream these (for stream=true requests)
    piece_delay: float = 0.0
    break_after: int | None = None  # drop the stream after this many pieces
    finish_reason: str | None = "stop"  # None: no chunk says why the answer ended
    done: bool = True  # end the stream with "data: [DONE]"
    raw: list[str] | None = None  # send these data: payloads (or this body) as they are


# Streams that look like answers but are not whole ones, as servers have sent them.
BROKEN_STREAMS: dict[str, Step] = {
    "no [DONE]": Step(pieces=["Use ", "pip."], done=False),
    "no finish_reason": Step(pieces=["Use ", "pip."], finish_reason=None),
    "length": Step(pieces=["Use ", "pip"], finish_reason="length"),
    "content_filter": Step(pieces=["Use "], finish_reason="content_filter"),
    "NUL": Step(pieces=["Use\x00", "pip."]),
    "special token": Step(pieces=["Use pip.", "<|im_", "end|>", "user: more"]),
    "U+FFFD run": Step(pieces=["Use ", "\ufffd\ufffd\ufffd"]),
    "data: 42": Step(pieces=["Use "], raw=["42"]),
    "choices as a string": Step(pieces=["Use "], raw=['{"choices": "abc"}']),
    "content as a number": Step(raw=['{"choices": [{"delta": {"content": 7}}]}']),
    "error mid-stream": Step(pieces=["Use "], raw=['{"error": {"message": "overloaded"}}']),
    "connection dropped": Step(pieces=["Use ", "pip ", "install."], break_after=1),
}


@dataclass
class FakeOpenAI:
    script: list[Step] = field(default_factory=list)
    default: Step = field(default_factory=Step)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Yields the base URL, as ``llm.remote.base_url`` takes it."""
        async with serve(self.app) as url:
            yield f"{url}/v1"

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.times.append(time.monotonic())
        step = self.script.pop(0) if self.script else self.default
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status != 200:
            headers = {"Retry-After": step.retry_after} if step.retry_after else {}
            if step.raw is not None:
                content = "".join(step.raw)
                return Response(content, step.status, headers, media_type="application/json")
            error = {"error": {"message": f"fake error {step.status}", "type": "fake"}}
            return JSONResponse(error, status_code=step.status, headers=headers)
        if body.get("stream"):
            limit = body.get("max_tokens")
            pieces = step.pieces if step.pieces is not None else step.text.split(" ")
            if isinstance(limit, int) and len(pieces) > limit and step.finish_reason == "stop":
                step = replace(step, pieces=pieces[:limit], finish_reason="length")
            return StreamingResponse(self._events(step), media_type="text/event-stream")
        if step.raw is not None:
            return Response("".join(step.raw), media_type="application/json")
        text, completion_tokens, finish = step.text, 3, step.finish_reason
        words, limit = text.split(" "), body.get("max_tokens")
        if isinstance(limit, int) and len(words) > limit:  # a word counts as a token here
            text, completion_tokens, finish = " ".join(words[:limit]), limit, "length"
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 11 + completion_tokens,
                },
            }
        )

    async def _events(self, step: Step) -> AsyncIterator[bytes]:
        pieces = step.pieces if step.pieces is not None else step.text.split(" ")
        first = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        yield f"data: {json.dumps(first)}\n\n".encode()
        yield b": keep-alive comment\n\n"
        for payload in step.raw or []:
            yield f"data: {payload}\n\n".encode()
        for count, piece in enumerate(pieces):
            if step.break_after is not None and count >= step.break_after:
                raise RuntimeError("fake server drops the connection")
            if step.piece_delay:
                await asyncio.sleep(step.piece_delay)
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
        if step.finish_reason is not None:
            end = {"choices": [{"index": 0, "delta": {}, "finish_reason": step.finish_reason}]}
            yield f"data: {json.dumps(end)}\n\n".encode()
        if step.done:
            yield b"data: [DONE]\n\n"


@dataclass
class FakeSearch:
    """A Serper-compatible ``POST /search`` and the web pages its results point to."""

    api_key: str = "test-serper-key"
    pages: dict[str, tuple[int, str, str]] = field(
        default_factory=dict
    )  # path -> status, type, body
    results: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    search_status: int = 200
    url: str = ""

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/search", self._search, methods=["POST"]),
                Route("/pages/{name:path}", self._page, methods=["GET"]),
            ]
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        async with serve(self.app) as url:
            self.url = url
            yield url

    def page_url(self, name: str) -> str:
        return f"{self.url}/pages/{name}"

    async def _search(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse({"message": "Unauthorized."}, status_code=403)
        body = await request.json()
        self.queries.append(body)
        if self.search_status != 200:
            return JSONResponse({"message": "fake failure"}, status_code=self.search_status)
        organic = [{**r, "position": i + 1} for i, r in enumerate(self.results)]
        return JSONResponse(
            {"searchParameters": {"q": body.get("q"), "type": "search"}, "organic": organic}
        )

    async def _page(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.fetched.append(name)
        status, kind, body = self.pages.get(name, (404, "text/html", "<h1>Not found</h1>"))
        if kind == "text/html":
            return HTMLResponse(body, status_code=status)
        return Response(body, status_code=status, media_type=kind)
