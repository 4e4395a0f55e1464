"""Optional second-stage reranking of the fused candidates.

No reranker ships offline weights, so there is none by default. Two ways to add one: a local
cross-encoder folder (sentence-transformers ``CrossEncoder``, imported only when configured), or
a server speaking the Jina/Cohere-style ``POST /v1/rerank`` (vLLM, Xinference, jina, TEI's
OpenAI-compatible routers ...).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from knowledge.http import post_json
from knowledge.settings import RerankerSettings


class RerankerError(Exception):
    """The reranker cannot be loaded or called; the message says what to fix."""


class RerankerConfigError(RerankerError):
    """bot.yaml names a local model that is not there (exit code 2 in the CLI)."""


class Reranker(Protocol):
    name: str

    def warm_up(self) -> None: ...

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, higher is better, in the order given."""
        ...


class CrossEncoderReranker:
    def __init__(self, settings: RerankerSettings) -> None:
        self.settings = settings
        self.name = f"cross-encoder:{settings.model_path}"
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            path = self.settings.model_path
            if path is None or not path.exists():
                raise RerankerConfigError(
                    f"knowledge.reranker.model_path: {path} does not exist "
                    "(cross-encoders are loaded from a local folder; nothing is downloaded)"
                )
            try:
                from sentence_transformers import CrossEncoder
            except ImportError:
                raise RerankerError(
                    "knowledge.reranker.kind cross_encoder needs the sentence-transformers "
                    "package: pip install sentence-transformers"
                ) from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._model = CrossEncoder(str(path), device="cpu", local_files_only=True)

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        self.warm_up()
        scores = self._model.predict([(query, text) for text in texts], show_progress_bar=False)
        return [float(s) for s in scores]


class HttpReranker:
    """``POST {base_url}/rerank`` with ``{model, query, documents, top_n}``; reads
    ``results[].index`` and ``results[].relevance_score``."""

    def __init__(self, settings: RerankerSettings) -> None:
        self.settings = settings
        self.name = f"rerank-api:{settings.model or 'default'}"
        self.url = str(settings.base_url).rstrip("/") + "/rerank"
        self._client: Any = None

    def warm_up(self) -> None:
        if self._client is None:
            import httpx

            headers = {}
            if self.settings.api_key is not None:
                headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
            self._client = httpx.Client(timeout=self.settings.timeout_seconds, headers=headers)

    def rerank(self, query: str, texts: list[str]) -> list[float]:

        if not texts:
            return []
        self.warm_up()
        body: dict[str, Any] = {
            "query": query,
            "documents": texts,
            "top_n": len(texts),
            "return_documents": False,
        }
        if self.settings.model:
            body["model"] = self.settings.model

        answer = post_json(
            self._client, self.url, body, RerankerError, attempts=3, backoff=0.2, max_wait=2
        )
        scores = [float("-inf")] * len(texts)
        try:
            for item in answer["results"]:
                scores[int(item["index"])] = float(item["relevance_score"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RerankerError(f"{self.url}: unexpected answer ({exc})") from None
        return scores


def build_reranker(settings: RerankerSettings) -> Reranker | None:
    if settings.kind == "cross_encoder":
        return CrossEncoderReranker(settings)
    if settings.kind == "http":
        return HttpReranker(settings)
    return None
