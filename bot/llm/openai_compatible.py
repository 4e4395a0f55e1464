"""Any OpenAI-compatible chat server over httpx: Kimi, DeepSeek, GPT, GLM, vLLM, llama.cpp server,
and the daemon's own model process (bot.llm.serve).

``POST {base_url}/chat/completions``, streamed as server-sent events when asked. Failures that a
second try may cure (429, 5xx, timeouts, dropped connections) are retried by tenacity with
exponential backoff and jitter, honouring the server's ``Retry-After``; a server that asks for a
longer wait than ``retry_max_seconds`` gets none: the call fails at once with ``RateLimited`` so
a hybrid model can answer locally. A stream is retried only until its first token arrives.
Requests- and tokens-per-minute budgets are kept client-side (bot.llm.ratelimit).

What comes back is checked before anyone sees it as an answer: every response and stream chunk
against the wire format (pydantic), a stream must end with a chunk that says why it finished and
with ``[DONE]``, and the text must be text (no control characters, no chat-template special
tokens, no runs of U+FFFD from broken UTF-8). Anything else is a ``BrokenAnswer``; a stream that
stops at ``max_tokens`` is ``Truncated``. Neither is ever half-posted.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from bot.config import LLMSettings, RemoteLLMSettings
from bot.llm.protocol import (
    MESSAGE_OVERHEAD_TOKENS,
    BrokenAnswer,
    ChatMessage,
    Completion,
    ContextTooLong,
    LLMError,
    ModelError,
    RateLimited,
    Truncated,
    estimate_tokens,
    note,
    note_append,
)
from bot.llm.ratelimit import RateLimiter
from bot.llm.scoring import Score, score_from_probabilities, score_from_text
from bot.llm.vocabulary import Vocabulary

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


# -- what a server may send back ---------------------------------------------------------------
# Fields the bot does not read are ignored; a field it reads with the wrong type is an error.


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    index: int = 0
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class _Response(BaseModel):
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(BaseModel):
    content: str | None = None


class _ChunkChoice(BaseModel):
    index: int = 0
    delta: _Delta = _Delta()
    finish_reason: str | None = None


class _Chunk(BaseModel):
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None
    error: Any = None


class _Score(BaseModel):
    """The answer of ``POST /huixiangdou/score`` (bot.llm.serve)."""

    probabilities: dict[int, float]
    mass: float
    text: str


# Control characters other than tab and line breaks; chat-template markers such as ChatML's
# <|im_end|>, Llama 3's <|eot_id|>, Gemma's <end_of_turn> and </s>; replacement characters in a
# row, which is what broken UTF-8 turns into.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|<(?:start|end)_of_turn>|</s>")
_REPLACEMENT_RUN = re.compile("\ufffd{2,}")


def junk(text: str) -> str | None:
    """Why ``text`` is not an answer the model meant to give (None when it is fine)."""
    if found := _CONTROL.search(text):
        return f"control character U+{ord(found.group()):04X} in the text"
    if found := _SPECIAL_TOKEN.search(text):
        return f"the chat-template token {found.group()} in the text"
    if _REPLACEMENT_RUN.search(text):
        return "replacement characters (U+FFFD) in a row: broken UTF-8"
    return None


def timed_out(exc: BaseException) -> bool:
    """Whether a failed call waited longer than the read timeout for the next byte."""
    return isinstance(exc.__cause__, httpx.TimeoutException)


def dropped(exc: BaseException) -> bool:
    """Whether a failed call lost its connection (refused, reset, closed mid-answer)."""
    cause = exc.__cause__
    return isinstance(cause, httpx.TransportError) and not isinstance(
        cause, httpx.TimeoutException
    )


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
            return Vocabulary(path).count_tokens
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
        count_messages: Callable[[list[ChatMessage]], int] | None = None,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.defaults = defaults or LLMSettings()
        self.name = name or f"openai:{settings.model or 'default'}"
        self.base_url, self._auth = split_credentials(settings.base_url)
        self.context_length = settings.max_context
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tokenizer = _Tokenizer(settings.tokenizer)
        # An exact count of the templated prompt, when the owner has the model's template.
        self._count_messages = count_messages
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
        if self._count_messages is not None:
            return self._count_messages(messages)
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
        if status == 400 and ("context_length_exceeded" in raw or "context length" in raw):
            raise ContextTooLong(f"{self.name}: {detail.strip()[:200]}")
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
            data = _Response.model_validate_json(response.content)
            choice = data.choices[0]
        except (ValidationError, IndexError) as exc:
            raise BrokenAnswer(
                f"{self.name}: not a chat completion: {response.text[:200]!r}"
            ) from exc
        text = choice.message.content or ""
        self._check_answer(text, choice.finish_reason, allow_length=True)
        usage = data.usage or _Usage()
        if usage.total_tokens:
            self._limiter.settle(use, usage.total_tokens)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            finish_reason=choice.finish_reason or "stop",
            model=self.name,
        )

    def _check_answer(self, text: str, finish_reason: str | None, *, allow_length: bool) -> None:
        """Raise unless ``text`` is a whole answer: it finished with ``stop`` (or ``length``
        where the caller reads the finish reason itself) and is clean text."""
        if finish_reason is None:
            raise BrokenAnswer(f"{self.name}: the answer came without a finish reason")
        if finish_reason == "length" and not allow_length:
            raise Truncated(f"{self.name}: the answer reached max_tokens before it ended")
        if finish_reason not in ("stop", "length"):
            raise BrokenAnswer(f"{self.name}: the answer ended with finish_reason {finish_reason}")
        if reason := junk(text):
            raise BrokenAnswer(f"{self.name}: not a usable answer: {reason}")

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
        extra_body: dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """The answer piece by piece. Raises ``BrokenAnswer`` or ``Truncated`` at the end when
        the stream was not a whole answer, and notes the finish reason and token count."""
        body = self._body(messages, max_tokens, temperature, stop, stream=True)
        body.update(extra_body or {})
        response = await self._open_stream(body, self._budget(messages, body["max_tokens"]))
        text: list[str] = []
        finish_reason: str | None = None
        usage: _Usage | None = None
        done = False
        try:
            async for event in EventSource(response).aiter_sse():
                data = event.data.strip()
                if event.event != "message" or not data:
                    continue  # pings and keep-alives
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = _Chunk.model_validate_json(data)
                except ValidationError as exc:
                    raise BrokenAnswer(
                        f"{self.name}: malformed stream chunk {data[:80]!r}"
                    ) from exc
                if chunk.error is not None:
                    raise BrokenAnswer(f"{self.name}: error mid-stream: {chunk.error}")
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.delta.content:
                        text.append(choice.delta.content)
                        yield choice.delta.content
        except (httpx.HTTPError, SSEError) as exc:
            raise BrokenAnswer(
                f"{self.name}: the stream broke off: {_describe(exc)}: {exc}"
            ) from exc
        finally:
            await response.aclose()
        if not done:
            raise BrokenAnswer(f"{self.name}: the stream ended without [DONE]")
        # Without usage (most servers send none in a stream), each piece is about one token.
        tokens = usage.completion_tokens if usage and usage.completion_tokens else len(text)
        note(finish_reason=finish_reason, completion_tokens=tokens)
        self._check_answer("".join(text), finish_reason, allow_length=False)

    async def score(self, messages: list[ChatMessage]) -> Score:
        """A 0-10 score. With ``score_route`` (``huixiangdou-bot llm serve``): the expected
        score under the model's own probabilities. Otherwise a short answer at temperature 0,
        parsed; ``score_extra_body`` can constrain it on servers that support it (llama.cpp
        server ``grammar``, vLLM ``guided_choice``)."""
        if self.settings.score_route:
            return await self._score_on_route(messages, self.settings.score_route)
        completion = await self.complete(
            messages,
            max_tokens=8,
            temperature=0.0,
            extra_body=self.settings.score_extra_body,
        )
        return score_from_text(completion.text, self.name)

    async def _score_on_route(self, messages: list[ChatMessage], route: str) -> Score:
        self._budget(messages, 2)
        try:
            async for attempt in self._retrying():
                with attempt:
                    response = await self._http().post(route, json={"messages": messages})
                    await self._check_status(response)
        except (LLMError, httpx.HTTPError) as exc:
            raise self._failed(exc) from exc
        try:
            result = _Score.model_validate_json(response.content)
        except ValidationError as exc:
            raise BrokenAnswer(f"{self.name}: not a score: {response.text[:200]!r}") from exc
        return score_from_probabilities(result.probabilities, result.mass, result.text, self.name)
