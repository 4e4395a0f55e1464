"""A local GGUF model and a remote one behind one ``ChatModel``.

Short scoring prompts go to the local model (fast, free, token probabilities); long-context
answers go to the remote one. When the first choice fails (an error after its retries, a blown
rate budget, a prompt too long for it), the call goes to the other. Which backend was tried, why,
and what failed goes into the trace through ``bot.llm.protocol.note``.

Callers that can re-pack the prompt for a smaller context (the ``generate`` middleware) ask for
the ordered ``routes`` and walk them with ``stream_with_fallback``; plain ``complete``/``stream``
calls do the same with the prompt as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from bot.config import RoutingSettings
from bot.llm.protocol import (
    ChatMessage,
    ChatModel,
    Completion,
    HealthReporting,
    LLMError,
    Route,
    Task,
    context_length,
    count_message_tokens,
    count_tokens,
    note,
    note_append,
)

T = TypeVar("T")


class HybridChatModel:
    """Routes each call to ``local`` or ``remote`` and falls back to the other."""

    def __init__(self, local: ChatModel, remote: ChatModel, routing: RoutingSettings) -> None:
        self.local = local
        self.remote = remote
        self.routing = routing
        self.name = f"hybrid({local.name}, {remote.name})"

    @property
    def context_length(self) -> int:
        return max(context_length(self.local), context_length(self.remote))

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.local, text)

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        return count_message_tokens(self.local, messages)

    def health(self) -> dict[str, Any]:
        """The local model's process, when it has one."""
        return self.local.health() if isinstance(self.local, HealthReporting) else {}

    def routes(self, task: Task, prompt_tokens: int, max_tokens: int) -> list[Route]:
        """Backends to try for one call, in order, each with the reason for its place."""
        routing = self.routing
        need = prompt_tokens + max_tokens
        local_fits = need <= context_length(self.local)
        if task == "score":
            prefer_local = routing.scores == "local"
            reason = f"scoring prompt goes {routing.scores} (llm.routing.scores)"
        elif routing.answers != "auto":
            prefer_local = routing.answers == "local"
            reason = f"answers go {routing.answers} (llm.routing.answers)"
        else:
            prefer_local = prompt_tokens <= routing.local_max_prompt_tokens and local_fits
            sign = "<=" if prefer_local else ">"
            reason = (
                f"{prompt_tokens}-token answer prompt {sign} local_max_prompt_tokens "
                f"{routing.local_max_prompt_tokens}"
            )
            if not local_fits:
                reason = f"{need} tokens do not fit the local context {context_length(self.local)}"
        first, second = (self.local, self.remote) if prefer_local else (self.remote, self.local)
        routes = [Route(first, reason)]
        if routing.fallback:
            routes.append(Route(second, f"fallback after {first.name} failed"))
        return routes

    async def warm_up(self) -> None:
        await self.local.warm_up()
        await self.remote.warm_up()

    async def close(self) -> None:
        try:
            await self.remote.close()
        finally:
            await self.local.close()

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Completion:
        tokens = count_message_tokens(self, messages)
        routes = self.routes("answer", tokens, max_tokens or 0)

        async def call(model: ChatModel) -> Completion:
            return await model.complete(
                messages, max_tokens=max_tokens, temperature=temperature, stop=stop
            )

        return await call_with_fallback(routes, call)

    async def stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        tokens = count_message_tokens(self, messages)
        routes = self.routes("answer", tokens, max_tokens or 0)

        def start(model: ChatModel) -> AsyncIterator[str]:
            return model.stream(
                messages, max_tokens=max_tokens, temperature=temperature, stop=stop
            )

        async for piece in stream_with_fallback(routes, start):
            yield piece


def _noted_failure(route: Route, exc: LLMError) -> None:
    note_append("fallbacks", f"{route.model.name}: {exc}")


async def call_with_fallback(routes: list[Route], call: Callable[[ChatModel], Awaitable[T]]) -> T:
    """``call`` on each route's model in turn until one succeeds; the last failure is raised."""
    for index, route in enumerate(routes):
        try:
            result = await call(route.model)
        except LLMError as exc:
            _noted_failure(route, exc)
            if index == len(routes) - 1:
                raise
            continue
        if len(routes) > 1:
            note(route=route.model.name, route_reason=route.reason)
        return result
    raise LLMError("no model to call")


async def stream_with_fallback(
    routes: list[Route], start: Callable[[ChatModel], AsyncIterator[str]]
) -> AsyncIterator[str]:
    """Stream from each route's model in turn until one delivers; a stream that fails after its
    first token is not retried elsewhere (the caller already has half an answer)."""
    for index, route in enumerate(routes):
        started = False
        try:
            async for piece in start(route.model):
                if not started:
                    started = True
                    if len(routes) > 1:
                        note(route=route.model.name, route_reason=route.reason)
                yield piece
        except LLMError as exc:
            _noted_failure(route, exc)
            if started or index == len(routes) - 1:
                raise
            continue
        if not started and len(routes) > 1:
            note(route=route.model.name, route_reason=route.reason)
        return
