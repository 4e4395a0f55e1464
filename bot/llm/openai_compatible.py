"""Any OpenAI-compatible chat server over httpx: Kimi, DeepSeek, GPT, GLM, vLLM, llama.cpp server.

``POST {base_url}/chat/completions``, streamed as server-sent events when asked. Failures that a
second try may cure (429, 5xx, timeouts, dropped connections) are retried by tenacity with
exponential backoff and jitter, honouring the server's ``Retry-After``; a server that asks for a
longer wait than ``retry_max_seconds`` gets none: the call fails at once with ``RateLimited`` so
a hybrid model can answer locally. A stream is retried only until its first token arrives.
Requests- and tokens-per-minute budgets are kept client-side (bot.llm.ratelimit).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from bot.config import LLMSettings, RemoteLLMSettings
from bot.llm.protocol import (
    MESSAGE_OVERHEAD_TOKENS,
    ChatMessage,
    Completion,
    ContextTooLong,
    LLMError,
    ModelError,
    RateLimited,
    estimate_tokens,
    note_append,
)
from bot.llm.ratelimit import RateLimiter
from bot.llm.scoring import Score, score_from_text

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


class HTTPStatusFailure(LLMError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, HTTPStatusFailure):
        return exc.status in RETRYABLE_STATUS
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HTTPStatusFailure):
        return f"HTTP {exc.status}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    return type(exc).__name__


class _Tokenizer:
    """Exact counts from a local copy of the remote model's tokenizer (a tokenizer.json or a
    GGUF of the same model); a deliberately high estimate without one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._encode: Callable[[str], int] | None = None

    def _load(self) -> Callable[[str], int]:
        path = self.path
        if path is None:
            return estimate_tokens
        if not path.is_file():
            raise ModelError(f"llm.remote.tokenizer: {path} does not exist")
        if path.suffix == ".gguf":
            from bot.llm.llama_cpp import load_vocabulary

            vocab = load_vocabulary(path)
            return lambda text: len(vocab.tokenize(text.encode("utf-8"), False, False))
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ModelError(
                "llm.remote.tokenizer names a tokenizer.json, which needs the 'tokenizers' "
                "package: pip install tokenizers"
            ) from None
        tokenizer = Tokenizer.from_file(str(path))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        if self._encode is None:
            self._encode = self._load()
        return self._encode(text)


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``https://user:key@host/v1`` as the URL without its credential (safe to show in errors,
    traces and logs) and the credential as HTTP basic auth, which is what the server gets."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    return str(parsed.copy_with(userinfo=b"")), httpx.BasicAuth(parsed.username, parsed.password)


class OpenAICompatibleChatModel:
    """A chat model behind an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        settings: RemoteLLMSettings,
        defaults: LLMSettings | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.defaults = defaults or LLMSettings()
        self.name = f"openai:{settings.model or 'default'}"
        self.base_url, self._auth = split_credentials(settings.base_url)
        self.context_length = settings.max_context
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tokenizer = _Tokenizer(settings.tokenizer)
        self._limiter = RateLimiter(
            settings.requests_per_minute, settings.tokens_per_minute, sleep=sleep
        )

    # -- set-up -------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            headers = {"Content-Type": "application/json"}
            if s.api_key is not None and s.api_key.get_secret_value():
                headers["Authorization"] = f"Bearer {s.api_key.get_secret_value()}"
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                auth=self._auth,
                headers=headers,
                timeout=httpx.Timeout(s.read_timeout_seconds, connect=s.connect_timeout_seconds),
                transport=self._transport,
            )
        return self._client

    async def warm_up(self) -> None:
        """Open the connection pool and check the tokenizer; no request is made (the server may
        start later than the bot)."""
        self._http()
        self._tokenizer.count("warm up")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- tokens -------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return self._tokenizer.count(text)

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)

    # -- requests -----------------------------------------------------------------------------

    def _body(
        self,
        messages: list[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        stop: list[str] | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": list(messages),
            "max_tokens": max_tokens or self.defaults.max_tokens,
            "temperature": self.defaults.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if stop:
            body["stop"] = stop
        return body

    def _retrying(self) -> AsyncRetrying:
        s = self.settings
        backoff = wait_exponential_jitter(
            multiplier=max(s.retry_initial_seconds, 1e-3),
            max=s.retry_max_seconds,
            jitter=s.retry_initial_seconds,
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, HTTPStatusFailure) and exc.retry_after is not None:
                return exc.retry_after
            return float(backoff(state))

        async def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            note_append("retries", f"{_describe(exc) if exc else '?'}, waited {seconds:.1f}s")
            log.info(
                "%s: attempt %d failed (%s); retrying in %.1fs",
                self.name,
                state.attempt_number,
                exc,
                seconds,
            )

        return AsyncRetrying(
            stop=stop_after_attempt(s.attempts),
            wait=wait,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        raw = (await response.aread()).decode("utf-8", errors="replace")
        try:
            detail = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = raw
        status = response.status_code
        hint = ""
        if status in (401, 403):
            hint = " (check llm.remote.api_key)"
        elif status == 404:
            hint = " (check llm.remote.base_url and llm.remote.model)"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        message = f"{self.name}: HTTP {status}{hint}: {detail.strip()[:200]}"
        if retry_after is not None and retry_after > self.settings.retry_max_seconds:
            raise RateLimited(
                f"{message} (the server asks to wait {retry_after:.0f}s, more than "
                f"retry_max_seconds {self.settings.retry_max_seconds:g})"
            )
        raise HTTPStatusFailure(message, status, retry_after)

    def _budget(self, messages: list[ChatMessage], max_tokens: int) -> int:
        prompt = self.count_message_tokens(messages)
        if prompt + max_tokens > self.context_length:
            raise ContextTooLong(
                f"{self.name}: {prompt} prompt tokens + {max_tokens} to answer exceed "
                f"max_context {self.context_length}"
            )
        return prompt + max_tokens

    def _failed(self, exc: Exception) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        attempts = self.settings.attempts
        return LLMError(
            f"{self.name}: {_describe(exc)} after {attempts} attempt(s) to {self.base_url}: {exc}"
        )

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> Completion:
        body = self._body(messages, max_tokens, temperature, stop, stream=False)
        body.update(extra_body or {})
        tokens = self._budget(messages, body["max_tokens"])
        try:
            async for attempt in self._retrying():
                with attempt:
                    use = await self._limiter.acquire(tokens, self.settings.max_wait_seconds)
                    response = await self._http().post("/chat/completions", json=body)
                    await self._check_status(response)
        except (LLMError, httpx.HTTPError) as exc:
            raise self._failed(exc) from exc
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.name}: unexpected response: {response.text[:200]}") from exc
        usage = data.get("usage") or {}
        if usage.get("total_tokens"):
            self._limiter.settle(use, int(usage["total_tokens"]))
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "stop",
            model=self.name,
        )

    async def _open_stream(self, body: dict[str, Any], tokens: int) -> httpx.Response:
        """Send the request and return the response once its status is OK (retried)."""
        client = self._http()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        try:
            async for attempt in self._retrying():
                with attempt:
                    await self._limiter.acquire(tokens, self.settings.max_wait_seconds)
                    request = client.build_request(
                        "POST", "/chat/completions", json=body, headers=headers
                    )
                    response = await client.send(request, stream=True)
                    try:
                        await self._check_status(response)
                    except BaseException:
                        await response.aclose()
                        raise
        except (LLMError, httpx.HTTPError) as exc:
            raise self._failed(exc) from exc
        return response

    async def stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        body = self._body(messages, max_tokens, temperature, stop, stream=True)
        response = await self._open_stream(body, self._budget(messages, body["max_tokens"]))
        try:
            async for event in EventSource(response).aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                try:
                    chunk = json.loads(event.data)
                except ValueError:
                    continue  # keep-alive comments and the like
                if "error" in chunk:
                    raise LLMError(f"{self.name}: error mid-stream: {chunk['error']}")
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except (httpx.HTTPError, SSEError) as exc:
            raise LLMError(f"{self.name}: the stream broke off: {_describe(exc)}: {exc}") from exc
        finally:
            await response.aclose()

    async def score(self, messages: list[ChatMessage]) -> Score:
        """A short answer at temperature 0, parsed; ``score_extra_body`` can constrain it on
        servers that support it (llama.cpp server ``grammar``, vLLM ``guided_choice``)."""
        completion = await self.complete(
            messages,
            max_tokens=8,
            temperature=0.0,
            extra_body=self.settings.score_extra_body,
        )
        return score_from_text(completion.text, self.name)
