"""The bot's own routes under generated bad input (tests/contracts/fuzz.py): the playground's
API, /healthz and /metrics, and the admin check. Only 4xx for bad input, nothing stored for a
refusal, no secret in any answer, a quiet log. (Each platform's webhook is fuzzed by the adapter
contract.) Memory stays bounded when a client streams a huge body."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import strategies as st

from bot.app.server import create_app
from bot.config import Config
from bot.runtime import Bot
from tests.contracts.adapter import stored_count
from tests.contracts.fuzz import (
    CLIENT,
    HEADER_TEXT,
    JSON,
    FuzzRequest,
    fuzz,
    garbage,
    headers,
    oversized,
)

pytestmark = pytest.mark.integration

EXAMPLES = 1000
TOKEN = "adm-7f3c9a1e5b2d4c6f8a0b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API_KEY = "sk-fuzz-5e1d0c9b8a7f"
URL_KEY = "url-key-2b4d6f8a"
SECRETS = (TOKEN, API_KEY, URL_KEY)


@pytest.fixture
async def bot(
    config_factory: Callable[..., Config],
    bot_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Bot:
    """The playground alone, behind an admin token the fuzzer sends (unless a generated
    request sets Authorization itself), so the generated requests reach the handlers from a
    client beyond this machine. Secrets in the config, to look for in answers."""
    monkeypatch.setenv("LLM_API_KEY", API_KEY)
    config = config_factory(
        {
            "server": {"admin_token": TOKEN},
            "pipeline": ["tests.plugins:StaySilent"],
            "llm": {
                "remote": {
                    "base_url": f"http://user:{URL_KEY}@127.0.0.1:9/v1",
                    "api_key": "${LLM_API_KEY}",
                }
            },
        }
    )
    built: Bot = await bot_factory(config, _playground(config))
    return built


def _playground(config: Config) -> list[Any]:
    from bot.adapter import build_adapters

    return build_adapters(config)


def posted_messages() -> st.SearchStrategy[FuzzRequest]:
    """Bodies for POST /api/messages: right and wrong fields, types and sizes."""
    field_values = {
        "sender": st.text(max_size=80) | JSON,
        "conversation_id": st.text(max_size=140) | JSON,
        "conversation_type": st.sampled_from(["group", "p2p", "channel"]) | JSON,
        "message_id": st.text(max_size=140) | JSON,
        "mentioned_bot": st.booleans() | JSON,
        "wait": st.booleans() | JSON,
    }
    fields = st.fixed_dictionaries(
        {"text": st.text(max_size=300) | JSON},
        optional={**field_values, "extra": JSON},
    )
    posted = fields.map(lambda body: FuzzRequest("message", json.dumps(body).encode()))
    junk = st.builds(
        lambda body, sent: FuzzRequest("garbage", body, sent),
        garbage(256 << 10),
        headers(["content-type"]),
    )
    return st.one_of(posted, junk, oversized(256 << 10))


def message_paths() -> st.SearchStrategy[FuzzRequest]:
    ids = st.integers(min_value=-(2**70), max_value=2**80).map(str) | st.text(max_size=40)
    query = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3)
    return st.builds(
        lambda message_id, params: FuzzRequest(
            "get", path=f"/api/messages/{quote(message_id, safe='')}?{_query(params)}"
        ),
        ids,
        query,
    )


def reactions() -> st.SearchStrategy[FuzzRequest]:
    """POST /api/messages/{id}/reactions: ids that exist or not, right and wrong bodies."""
    ids = st.integers(min_value=0, max_value=2**80)
    body = st.fixed_dictionaries(
        {"reaction": st.sampled_from(["up", "down", "sideways"]) | JSON},
        optional={"sender": st.text(max_size=80) | JSON, "extra": JSON},
    ).map(lambda value: json.dumps(value).encode())
    return st.builds(
        lambda message_id, content: FuzzRequest(
            "reaction", content, path=f"/api/messages/{message_id}/reactions"
        ),
        ids,
        body | garbage(256 << 10),
    )


def plain_gets(path: str) -> st.SearchStrategy[FuzzRequest]:
    query = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3)
    return st.builds(
        lambda params, sent, body: FuzzRequest("get", body, sent, f"{path}?{_query(params)}"),
        query,
        headers(["authorization", "accept"]),
        st.binary(max_size=256),
    )


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


async def test_fuzzed_playground_messages(bot: Bot) -> None:
    report = await fuzz(
        create_app(bot),
        "POST",
        "/api/messages",
        posted_messages(),
        examples=EXAMPLES,
        stored=lambda: stored_count(bot),
        secrets=SECRETS,
        default_headers=AUTH,
    )
    report.assert_quiet()
    assert {202, 413, 422} <= set(report.statuses), report.summary()


async def test_fuzzed_reactions(bot: Bot) -> None:
    report = await fuzz(
        create_app(bot),
        "POST",
        "/api/messages/{id}/reactions",
        reactions(),
        examples=EXAMPLES,
        secrets=SECRETS,
        default_headers=AUTH,
    )
    report.assert_quiet()
    assert set(report.statuses) <= {404, 413, 422}, report.summary()  # no reply to react to


@pytest.mark.parametrize(
    ("path", "requests"),
    [
        ("/api/messages/{id}", message_paths()),
        ("/healthz", plain_gets("/healthz")),
        ("/metrics", plain_gets("/metrics")),
    ],
)
async def test_fuzzed_reads(bot: Bot, path: str, requests: st.SearchStrategy[FuzzRequest]) -> None:
    report = await fuzz(
        create_app(bot),
        "GET",
        path,
        requests,
        examples=EXAMPLES,
        secrets=SECRETS,
        default_headers=AUTH,
    )
    report.assert_quiet()
    # 307: a trailing "/"; 405: a path that normalises to the POST-only /api/messages
    assert set(report.statuses) <= {200, 307, 404, 405}, report.summary()


async def test_fuzzed_credentials_never_open_the_admin_pages(
    config_factory: Callable[..., Config], bot_factory: Callable[..., Any]
) -> None:
    config = config_factory({"server": {"admin_token": TOKEN}})
    bot = await bot_factory(config, _playground(config))
    scheme = st.sampled_from(["Bearer", "Basic", "bearer", "Token", ""])
    authorization = st.builds(lambda s, v: f"{s} {v}".strip(), scheme, HEADER_TEXT) | HEADER_TEXT
    requests = st.builds(
        lambda value: FuzzRequest(
            "credentials", headers={"Authorization": value}, path="/console/log"
        ),
        authorization,
    )
    report = await fuzz(create_app(bot), "GET", "/console/log", requests, examples=EXAMPLES)
    assert set(report.statuses) == {401}, report.summary()
    assert report.noisy_lines == []


async def _stream(size: int, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    chunk = b"A" * piece
    for _ in range(size // piece):
        yield chunk


@pytest.mark.parametrize(("path", "status"), [("/api/messages", 413), ("/healthz", 404)])
async def test_a_huge_body_is_refused_while_it_streams(bot: Bot, path: str, status: int) -> None:
    """100 MB sent without a Content-Length costs a few MB at most: it is refused as soon as it
    passes the limit (or never read, by a route that takes no body)."""
    app = create_app(bot)
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    http = httpx.AsyncClient(transport=transport, base_url="http://bot.test", headers=AUTH)
    async with http as client:
        tracemalloc.start()
        try:
            response = await client.post(path, content=_stream(100 << 20))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        declared = await client.post(path, content=b"x", headers={"Content-Length": "104857600"})
    assert response.status_code == status
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert declared.status_code == 413
    assert declared.json() == {"code": 413, "msg": "request too large"}
    assert await stored_count(bot) == 0
