"""Property-based fuzzing of the bot's HTTP routes (hypothesis), shared by every platform's
webhook (through the adapter contract) and the bot's own routes, and by bench/fuzz_webhooks.py.

``fuzz`` sends generated requests to the real ASGI app in process (httpx's ASGI transport, as
a client beyond this machine) and checks each answer as it comes: never a 5xx, a refusal (4xx)
stores nothing, no secret in any answer; and over the run: no ERROR line or traceback in the
log, a bounded number of log lines.

A platform's webhook is described by a ``SignedRoute``: how to sign an arbitrary body and how to
seal (encrypt and sign) arbitrary content, as the platform would (signatures in headers or in
the query), plus a well-formed event to break and how it is written (JSON, XML).
``webhook_requests`` then generates what an attacker and a broken client send: unsigned
garbage, validly signed garbage, sealed garbage, authentic events with fields of the wrong type,
deeply nested JSON and bodies over the size limit (declared or chunked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp

from adapters.common.webhook import LOG_BURST, MAX_BODY_BYTES

# A client beyond this machine: what the admin check and the logs see.
CLIENT = ("203.0.113.7", 40123)

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)
# Printable ASCII without leading or trailing spaces: what an HTTP client can send at all.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip
)


@dataclass(frozen=True)
class FuzzRequest:
    kind: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""  # a path of its own (GET routes with ids); "" for the route's path
    chunked: bool = False  # sent without a Content-Length, in pieces
    query: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them readable
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return (
            f"FuzzRequest({self.kind!r}, {body!r}, {self.headers!r}, {self.path!r}, "
            f"{self.query!r})"
        )


@dataclass(frozen=True)
class Signed:
    """A request as the platform sends it: the body, and the signature (timestamp, nonce...)
    in headers or in the query."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    def request(self, kind: str) -> FuzzRequest:
        return FuzzRequest(kind, self.body, self.headers, query=self.query)


class SignedRoute(Protocol):
    """A platform's webhook, as the platform itself would call it."""

    path: str
    header_names: list[str]  # the headers the route reads (signature, timestamp...)
    query_names: list[str]  # the query parameters it reads

    def sign(self, body: bytes) -> Signed:
        """An authentic signature for any body, garbage included (as far as the platform's
        signature covers the body)."""
        ...

    def seal(self, content: bytes) -> Signed:
        """An authentic request carrying ``content``, encrypted and signed."""
        ...

    def event(self) -> dict[str, Any]:
        """A well-formed event (fresh ids), for the fuzzer to break."""
        ...

    def encode(self, event: dict[str, Any]) -> bytes:
        """An event as the platform writes it (JSON, or XML), before it is sealed."""
        ...


def headers(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """Random headers, among them ones the route reads (``names``)."""
    name = st.sampled_from([*names, "content-type", "authorization", "x-forwarded-for"])
    return st.dictionaries(name | st.from_regex(r"\Ax-[a-z]{1,8}\Z"), HEADER_TEXT, max_size=5)


def query(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """Random query parameters, among them ones the route reads (``names``)."""
    name = st.sampled_from(names) if names else st.text(max_size=8)
    return st.dictionaries(name | st.text(max_size=8), st.text(max_size=40), max_size=4)


def nested(depth: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """JSON nested deeper than any parser's recursion limit: [[[[...]]]] or {"a":{"a":...}}."""
    lists = depth.map(lambda d: b"[" * d + b"]" * d)
    objects = depth.map(lambda d: b'{"a":' * d + b"1" + b"}" * d)
    return lists | objects


def oversized(limit: int) -> st.SearchStrategy[FuzzRequest]:
    """Bodies just over and far over the limit, declared (Content-Length) or chunked."""
    return st.builds(
        lambda size, chunked: FuzzRequest(
            "oversized", b'{"encrypt": "' + b"A" * size + b'"}', chunked=chunked
        ),
        st.integers(limit, 4 * limit),
        st.booleans(),
    )


def garbage(limit: int) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=2048)
        | JSON.map(lambda value: json.dumps(value).encode())
        | nested(st.integers(200, min(limit // 2, 200_000)))
    )


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _leaf_paths(item, (*prefix, index))
    return paths


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], tuple(rest), new)
    return copy


def broken(template: Callable[[], dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A well-formed event with a few of its fields (anywhere in it) replaced by JSON of
    another shape or type."""

    def build(changes: list[tuple[int, Any]]) -> dict[str, Any]:
        event: Any = template()
        for index, value in changes:
            paths = _leaf_paths(event)
            event = _replaced(event, paths[index % len(paths)], value)
        return event if isinstance(event, dict) else {"event": event}

    return st.lists(st.tuples(st.integers(min_value=0), JSON), min_size=1, max_size=4).map(build)


def webhook_requests(
    route: SignedRoute, limit: int = MAX_BODY_BYTES
) -> st.SearchStrategy[FuzzRequest]:
    """Everything but an authentic, well-formed event."""
    unsigned = st.builds(
        lambda body, sent, params: FuzzRequest("unsigned", body, sent, query=params),
        garbage(limit),
        headers(route.header_names),
        query(route.query_names),
    )
    signed = garbage(limit).map(lambda body: route.sign(body).request("signed garbage"))
    sealed = garbage(limit).map(lambda content: route.seal(content).request("sealed garbage"))
    wrong = broken(route.event).map(
        lambda event: route.seal(route.encode(event)).request("wrong types")
    )
    return st.one_of(unsigned, signed, sealed, wrong, oversized(limit))


@dataclass
class FuzzReport:
    """What a run did, for assertions and for bench/fuzz_webhooks.py."""

    route: str
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    log_lines: int = 0  # every line the configured log level let through
    warnings: int = 0  # WARNING and above
    noisy_lines: list[str] = field(default_factory=list)  # ERROR or with a traceback

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def warning_budget(self) -> int:
        """Refusal lines are capped per minute: the most warnings a run this long may log."""
        return (LOG_BURST + 2) * (1 + int(self.seconds // 60))

    def assert_quiet(self) -> None:
        """No ERROR line, no traceback, and warnings within the refusal log's cap."""
        assert self.noisy_lines == [], self.noisy_lines[:5]
        assert self.warnings <= self.warning_budget(), self.summary()

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.route}: {self.requests} requests in {self.seconds:.1f}s "
            f"({self.per_second:.0f}/s), statuses {{{statuses}}}, {self.log_lines} log lines "
            f"({self.warnings} warnings, {len(self.noisy_lines)} errors/tracebacks)"
        )


class _Counting(logging.Handler):
    def __init__(self, report: FuzzReport) -> None:
        super().__init__(logging.DEBUG)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "httpx":  # the test's own client
            return
        self.report.log_lines += 1
        if record.levelno >= logging.WARNING:
            self.report.warnings += 1
        if record.levelno >= logging.ERROR or record.exc_info:
            self.report.noisy_lines.append(f"{record.name}: {record.getMessage()[:300]}")


async def _pieces(body: bytes, size: int = 64 << 10) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def fuzz(
    app: ASGIApp | str,
    method: str,
    path: str,
    requests: st.SearchStrategy[FuzzRequest],
    *,
    examples: int,
    stored: Callable[[], Awaitable[int]] | None = None,
    secrets: tuple[str, ...] = (),
    derandomize: bool = True,
    default_headers: dict[str, str] | None = None,
) -> FuzzReport:
    """Send ``examples`` generated requests to ``method path`` of ``app`` (in process, or a
    server's base URL) and check each: status below 500; a 4xx leaves ``stored()`` (messages in
    the database) unchanged; no ``secrets`` in an answer. Runs hypothesis in a worker thread,
    each request on this loop. ``default_headers`` go with every request that does not set
    them itself (the admin token, for a daemon with a real platform)."""
    loop = asyncio.get_running_loop()
    report = FuzzReport(f"{method} {path}")
    if isinstance(app, str):
        # A connection per request: a kept-alive one the server closed while the (loaded)
        # machine stalled fails the next request on the client's side, not the server's.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        client = httpx.AsyncClient(
            base_url=app, timeout=60, headers=default_headers, limits=no_reuse
        )
    else:
        transport = httpx.ASGITransport(app=app, client=CLIENT)
        client = httpx.AsyncClient(
            transport=transport, base_url="http://bot.test", timeout=60, headers=default_headers
        )

    async def one(request: FuzzRequest) -> None:
        before = await stored() if stored is not None else 0
        content: Any = _pieces(request.body) if request.chunked else request.body
        try:
            response = await client.request(
                method,
                request.path or path,
                content=content,
                headers=request.headers,
                params=request.query,
            )
        except httpx.TransportError:
            # Over a real connection, a server that refused an oversized body may close the
            # connection before the client has finished sending it.
            assert request.kind == "oversized", request
            report.requests += 1
            report.statuses[0] += 1
            return
        report.requests += 1
        report.statuses[response.status_code] += 1
        report.kinds[request.kind] += 1
        assert response.status_code < 500, (request, response.status_code, response.text[:300])
        if stored is not None and response.status_code >= 400:
            assert await stored() == before, (request, "a refused request stored something")
        for secret in secrets:
            assert secret not in response.text, (request, "a secret in the answer")

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def check(request: FuzzRequest) -> None:
        asyncio.run_coroutine_threadsafe(one(request), loop).result(timeout=120)

    counting = _Counting(report)
    root = logging.getLogger()
    root.addHandler(counting)
    started = time.perf_counter()
    try:
        await asyncio.to_thread(check)
    finally:
        report.seconds = time.perf_counter() - started
        root.removeHandler(counting)
        await client.aclose()
    return report
