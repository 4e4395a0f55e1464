"""When retrieval is weak, search the web and use the top pages as extra reference material.

Queries a Serper-compatible API (``POST {base_url}/search`` with ``X-API-KEY``), fetches the top
result pages, extracts their main text with trafilatura, and appends them to ``ctx.chunks`` with
their URLs, so ``cite`` can reference them. Web search is a bonus: any failure is recorded in the
trace and the message goes on without it. Pages on private or loopback addresses are refused
unless ``allow_private_addresses`` is set (the result list comes from a third party).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot.config import ConfigError
from bot.context import Chunk, TurnContext
from bot.message import Reply
from bot.pipeline import BaseMiddleware, CallNext

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 3 * 1024 * 1024


class WebSearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str = "https://google.serper.dev"
    api_key: SecretStr = Field(SecretStr(""), description="write ${SERPER_API_KEY}")
    when: Literal["weak", "always"] = "weak"
    score_key: str = Field(
        "dense",
        description="the passage score that says how well retrieval went (Chunk.scores key; "
        "the fused score when absent): dense cosine similarity by default",
    )
    min_score: float = Field(
        0.5, description="search when no retrieved passage scores at least this (when: weak)"
    )
    results: int = Field(5, ge=1, le=20, description="search results to ask for")
    fetch: int = Field(3, ge=0, le=10, description="top pages to fetch and extract")
    max_chars: int = Field(3000, ge=200, description="text kept from each page")
    timeout_seconds: float = Field(8.0, gt=0)
    sites: list[str] = Field(default_factory=list, description="only search these domains")
    country: str | None = Field(None, description="Serper 'gl', e.g. cn, us")
    language: str | None = Field(None, description="Serper 'hl', e.g. zh-cn, en")
    allow_private_addresses: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("expected an http(s) URL such as https://google.serper.dev")
        return value.rstrip("/")


class BlockedAddress(Exception):
    """A result page points at a private, loopback or link-local address."""


def _extract(html: str, url: str) -> str:
    import trafilatura

    text = trafilatura.extract(
        html, url=url, include_comments=False, include_tables=True, favor_precision=True
    )
    return text or ""


class WebSearch(BaseMiddleware[WebSearchOptions]):
    name = "web_search"
    Options = WebSearchOptions

    async def warm_up(self) -> None:
        if not self.options.api_key.get_secret_value():
            raise ConfigError(
                "middleware.web_search.api_key is empty: set it to ${SERPER_API_KEY} and export "
                "the key, or take web_search out of the pipeline"
            )

    def strength(self, ctx: TurnContext) -> float | None:
        """How well retrieval went: the best passage's ``score_key`` score."""
        key = self.options.score_key
        return max((c.scores.get(key, c.score) for c in ctx.chunks), default=None)

    def weak(self, ctx: TurnContext) -> bool:
        best = self.strength(ctx)
        return self.options.when == "always" or best is None or best < self.options.min_score

    def query(self, ctx: TurnContext) -> str:
        sites = [f"site:{site}" for site in self.options.sites]
        if len(sites) > 1:
            return f"{ctx.question} ({' OR '.join(sites)})"
        return " ".join([ctx.question, *sites])

    async def _guard(self, request: httpx.Request) -> None:
        """Refuse requests (redirects included) to addresses inside the bot's own network."""
        if self.options.allow_private_addresses:
            return
        host = request.url.host
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, request.url.port or 443, type=socket.SOCK_STREAM
            )
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for address in addresses:
            if not address.is_global:
                raise BlockedAddress(f"{host} resolves to a non-public address ({address})")

    async def search(self, client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"q": query, "num": self.options.results}
        if self.options.country:
            body["gl"] = self.options.country
        if self.options.language:
            body["hl"] = self.options.language
        response = await client.post(
            f"{self.options.base_url}/search",
            json=body,
            headers={"X-API-KEY": self.options.api_key.get_secret_value()},
        )
        response.raise_for_status()
        organic = response.json().get("organic") or []
        return [r for r in organic if isinstance(r, dict) and r.get("link")]

    async def fetch(self, client: httpx.AsyncClient, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url}")
        async with client.stream("GET", url, headers={"Accept": "text/html,text/plain"}) as page:
            page.raise_for_status()
            kind = page.headers.get("content-type", "").split(";")[0].strip()
            if kind not in ("text/html", "text/plain", "application/xhtml+xml", ""):
                raise ValueError(f"not a web page ({kind})")
            raw = b""
            async for piece in page.aiter_bytes():
                raw += piece
                if len(raw) > MAX_PAGE_BYTES:
                    break
            text = raw.decode(page.encoding or "utf-8", errors="replace")
        if kind == "text/plain":
            return text
        return await asyncio.to_thread(_extract, text, url)

    async def __call__(self, ctx: TurnContext, call_next: CallNext) -> Reply | None:
        options = self.options
        best = self.strength(ctx)
        if not self.weak(ctx):
            ctx.record(searched=False, score=best, threshold=options.min_score)
            return await call_next(ctx)
        query = self.query(ctx)
        timeout = httpx.Timeout(options.timeout_seconds)
        failures: list[str] = []
        added: list[Chunk] = []
        async with (
            httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=True,
                max_redirects=3,
                headers={"User-Agent": "huixiangdou-bot (web_search)"},
            ) as api,
            httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=True,
                max_redirects=3,
                headers={"User-Agent": "huixiangdou-bot (web_search)"},
                event_hooks={"request": [self._guard]},
            ) as web,
        ):
            try:
                results = await self.search(api, query)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("web search failed: %s", exc)
                ctx.record(searched=True, query=query, error=f"search failed: {exc}")
                return await call_next(ctx)
            top = results[: options.fetch]
            pages = await asyncio.gather(
                *(self.fetch(web, r["link"]) for r in top), return_exceptions=True
            )
        # The fetched pages, each replaced by its search snippet when it could not be read;
        # with fetch: 0, the snippets of all results. They rank below every retrieved passage
        # (the group's own documents come first when the prompt must be shortened), in result
        # order.
        floor = min((c.score for c in ctx.chunks), default=1.0)
        for rank, result in enumerate(top or results):
            page = pages[rank] if rank < len(pages) else ""
            if isinstance(page, BaseException):
                failures.append(f"{result['link']}: {type(page).__name__}: {page}")
                page = ""
            text = (page or result.get("snippet") or "").strip()[: options.max_chars]
            if not text:
                continue
            added.append(
                Chunk(
                    text=text,
                    source=result["link"],
                    title=str(result.get("title") or ""),
                    url=result["link"],
                    score=floor * (1 - 0.01 * (rank + 1)),
                    scores={"web_rank": float(rank + 1)},
                )
            )
        ctx.chunks = [*ctx.chunks, *added]
        ctx.record(
            searched=True,
            query=query,
            score=best,
            threshold=options.min_score,
            results=len(results),
            pages=len(added),
            failures=failures,
        )
        return await call_next(ctx)
