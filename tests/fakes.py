"""Test doubles for the edges only: messages as adapters would build them, and a scripted chat
model (the real llama.cpp path has its own tests)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from bot.config import Config
from bot.context import TurnContext
from bot.llm.protocol import ChatMessage, Completion
from bot.message import Message

_ids = itertools.count(1)


def make_message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "platform": "playground",
        "conversation_id": "group-1",
        "sender_id": "alice",
        "sender_name": "Alice",
        "text": "How do I install mmdetection?",
        "platform_message_id": f"m-{next(_ids)}",
    }
    fields.update(overrides)
    return Message(**fields)


def make_context(
    config: Config,
    text: str = "How do I install mmdet?",
    *,
    message: dict[str, Any] | None = None,
    **fields: Any,
) -> TurnContext:
    """A turn for middleware tests: ``message`` overrides fields of the Message, the other
    keywords set fields of the TurnContext (chunks, language...)."""
    built = make_message(text=text, **(message or {}))
    return TurnContext(
        message=built,
        message_id=1,
        config=config,
        group=config.group(built.conversation_id),
        question=text,
        **fields,
    )


Script = str | Callable[[list[ChatMessage]], str]


class ScriptedChatModel:
    """Answers from a script: a fixed string, a list consumed in order, or a function of the
    prompt. Records every prompt it was given; ``delay`` simulates a slow model."""

    name = "scripted"

    def __init__(self, script: Script | list[Script] = "scripted answer", delay: float = 0.0):
        self._script = script
        self._queue = list(script) if isinstance(script, list) else None
        self.delay = delay
        self.calls: list[list[ChatMessage]] = []
        self.warmed_up = False

    def _answer(self, messages: list[ChatMessage]) -> str:
        script: Script
        if self._queue is not None:
            if not self._queue:
                raise AssertionError("the scripted model ran out of answers")
            script = self._queue.pop(0)
        else:
            script = self._script  # type: ignore[assignment]
        return script(messages) if callable(script) else script

    async def warm_up(self) -> None:
        self.warmed_up = True

    async def complete(self, messages: list[ChatMessage], **kwargs: Any) -> Completion:
        self.calls.append(messages)
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self._answer(messages)
        return Completion(
            text=text, prompt_tokens=10, completion_tokens=len(text.split()), model=self.name
        )

    async def stream(self, messages: list[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        completion = await self.complete(messages, **kwargs)
        for word in completion.text.split(" "):
            yield word + " "

    async def close(self) -> None:
        return None


class GatedChatModel(ScriptedChatModel):
    """A slow model: sets ``started`` when asked, and answers once the test opens ``gate``."""

    def __init__(self, script: Script | list[Script] = "scripted answer") -> None:
        super().__init__(script)
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def complete(self, messages: list[ChatMessage], **kwargs: Any) -> Completion:
        self.started.set()
        await self.gate.wait()
        return await super().complete(messages, **kwargs)


class RecordingAdapter:
    """Stands in for an IM platform: records what the bot sent, and can fail on command
    (``failures`` SendErrors first, retryable or not)."""

    def __init__(self, name: str = "playground", failures: int = 0, retryable: bool = True):
        self.name = name
        self.failures = failures
        self.retryable = retryable
        self.sent: list[tuple[Any, Any]] = []
        self.attempts = 0

    simulated = True

    @property
    def routes(self) -> list[Any]:
        return []

    @property
    def admin_routes(self) -> list[Any]:
        return []

    async def start(self, inbox: Any) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, delivery: Any, reply: Any) -> str | None:
        from bot.adapter import SendError

        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise SendError("platform said no", retryable=self.retryable)
        self.sent.append((delivery, reply))
        return f"sent-{len(self.sent)}"
