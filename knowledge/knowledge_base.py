"""The knowledge base as the rest of the bot sees it: open, warm up, build, search, status.

Opening is cheap (nothing is loaded); ``warm_up`` loads the embedder, opens chroma and loads the
BM25 index. Everything here is blocking: async callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.bm25 import BM25Index, Tokenizer
from knowledge.embedders import Embedder, build_embedder
from knowledge.fusion import reciprocal_rank, weighted_sum
from knowledge.indexer import BuildReport, build
from knowledge.manifest import Manifest
from knowledge.rerank import Reranker, build_reranker
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore, VectorStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Hit:
    """One ranked chunk. ``score`` is the fused score (the reranker's when one is set)."""

    chunk_id: str
    text: str
    source: str
    title: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    collection: str = "default"


@dataclass(slots=True)
class KBScores:
    """How close a question is to the knowledge base, for the rejection gate."""

    dense_max: float
    dense_topk_mean: float
    bm25_max: float
    best_chunk_id: str | None


@dataclass(slots=True)
class KBStatus:
    documents: int
    chunks: int
    vectors: int
    collections: dict[str, tuple[int, int]]
    last_build: str | None
    last_build_seconds: float | None
    embedder: str
    dimension: int | None
    store: str
    sizes: dict[str, int]
    # Changes whenever an indexed document changes (a hash of every document's content hash).
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"documents:  {self.documents}",
            f"chunks:     {self.chunks} (vectors in the store: {self.vectors})",
        ]
        for name, (docs, chunks) in self.collections.items():
            out.append(f"  {name}: {docs} documents, {chunks} chunks")
        last = self.last_build or "never (run: huixiangdou-bot kb build)"
        if self.last_build_seconds is not None:
            last += f", took {self.last_build_seconds:.1f} s"
        out += [
            f"last build: {last}",
            f"embedder:   {self.embedder}"
            + (f" ({self.dimension} dimensions)" if self.dimension else ""),
            f"store:      {self.store}",
            "sizes:      "
            + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in self.sizes.items()),
        ]
        return out


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class KnowledgeBase:
    def __init__(
        self,
        settings: KnowledgeSettings,
        work_dir: Path,
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
    ) -> None:
        self.settings = settings
        self.root = work_dir / "knowledge"
        self.embedder: Embedder = embedder or build_embedder(settings.embedder)
        self.store: VectorStore = store or ChromaStore(settings.store, self.root / "chroma")
        self.reranker: Reranker | None = build_reranker(settings.reranker)
        self.tokenizer = Tokenizer()
        self.bm25 = BM25Index(settings.bm25.k1, settings.bm25.b)
        self._bm25_generation: str | None = None
        self._bm25_positions: dict[str, int] = {}
        self._manifest: Manifest | None = None
        self._lock = threading.RLock()
        self._cancel = threading.Event()

    @classmethod
    def open(cls, settings: KnowledgeSettings, work_dir: Path) -> KnowledgeBase:
        """Cheap: nothing is loaded or created until it is needed."""
        return cls(settings, work_dir)

    @property
    def manifest(self) -> Manifest:
        with self._lock:
            if self._manifest is None:
                self._manifest = Manifest(self.root / "manifest.sqlite3")
            return self._manifest

    @property
    def bm25_dir(self) -> Path:
        return self.root / "bm25"

    def warm_up(self) -> None:
        """Load the embedder, open chroma and load BM25, so the first question is not slow."""
        self.embedder.warm_up()
        self.store.count()
        self._fresh_bm25()
        self.tokenizer("预热 warm up")
        if self.reranker is not None:
            self.reranker.warm_up()

    def close(self) -> None:
        with self._lock:
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None

    # -- BM25 -----------------------------------------------------------------------------------

    def set_bm25(self, index: BM25Index, generation: str | None) -> None:
        with self._lock:
            self.bm25 = index
            self._bm25_positions = {chunk_id: i for i, chunk_id in enumerate(index.ids)}
            self._bm25_generation = generation

    def _fresh_bm25(self) -> tuple[BM25Index, dict[str, int]]:
        """The BM25 index matching the manifest, reloaded if another process rebuilt it."""
        generation = self.manifest.get_meta("generation")
        with self._lock:
            if generation != self._bm25_generation:
                if self._bm25_generation is not None:
                    # Another process re-indexed (this one sets the generation it builds).
                    self.store.reopen()
                index = BM25Index(self.settings.bm25.k1, self.settings.bm25.b)
                if not index.load(self.bm25_dir):
                    ids, tokens, collections = self.manifest.all_tokens()
                    index.build(ids, tokens, collections)
                self.set_bm25(index, generation)
            return self.bm25, self._bm25_positions

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, collection: str | None = None) -> list[Hit]:
        """The ``k`` best chunks for the query: dense + BM25, fused, then reranked if set."""
        settings = self.settings.search
        bm25, positions = self._fresh_bm25()
        n = max(settings.candidates, k)
        vector = self.embedder.embed_query([query])
        dense = {nb.id: nb.similarity for nb in self.store.query(vector, n, collection)[0]}
        top, all_bm25 = bm25.top(self.tokenizer(query), n, collection)
        lexical = dict(top)
        candidates = list(dict.fromkeys([*dense, *lexical]))
        if not candidates:
            return []
        # Fill in each candidate's score from the retriever that did not rank it, for the
        # weighted sum and so that every hit shows both.
        dense_all = dict(dense)
        missing = [c for c in candidates if c not in dense_all]
        for chunk_id, embedding in self.store.embeddings(missing).items():
            dense_all[chunk_id] = float(embedding @ vector[0])
        bm25_all = {
            c: float(all_bm25[positions[c]]) if c in positions and len(all_bm25) else 0.0
            for c in candidates
        }
        if settings.fusion == "rrf":
            ranked_dense = sorted(dense, key=lambda c: -dense[c])
            fused = reciprocal_rank([ranked_dense, [c for c, _ in top]], settings.rrf_k)
        else:
            fused = weighted_sum(
                {c: dense_all.get(c, 0.0) for c in candidates}, bm25_all, settings.dense_weight
            )
        order = sorted(candidates, key=lambda c: -fused.get(c, 0.0))
        keep = self.settings.reranker.top_n if self.reranker is not None else k
        order = order[: max(keep, k)]
        rows = self.manifest.chunks(order)
        hits = []
        for chunk_id in order:
            row = rows.get(chunk_id)
            if row is None:  # in chroma but not in the manifest: a build is running
                continue
            scores = {"dense": dense_all.get(chunk_id, 0.0), "bm25": bm25_all.get(chunk_id, 0.0)}
            scores[settings.fusion] = fused.get(chunk_id, 0.0)
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    text=row.text,
                    source=row.source,
                    title=row.title,
                    score=fused.get(chunk_id, 0.0),
                    scores=scores,
                    collection=row.collection,
                )
            )
        if self.reranker is not None and hits:
            reranked = self.reranker.rerank(query, [f"{h.title}\n{h.text}" for h in hits])
            for hit, score in zip(hits, reranked, strict=True):
                hit.scores["rerank"] = score
                hit.score = score
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def similarity(
        self, queries: list[str], collection: str | None = None, k: int = 5
    ) -> list[KBScores]:
        """Per query: best and top-k mean cosine to the chunks, best BM25 score, best chunk."""
        if not queries:
            return []
        bm25, _ = self._fresh_bm25()
        vectors = self.embedder.embed_query(queries)
        results: list[KBScores] = []
        for start in range(0, len(queries), 256):
            part = vectors[start : start + 256]
            neighbours = self.store.query(part, k, collection)
            for offset, found in enumerate(neighbours):
                query = queries[start + offset]
                lexical = bm25.scores(self.tokenizer(query), collection)
                sims = [nb.similarity for nb in found]
                results.append(
                    KBScores(
                        dense_max=max(sims) if sims else 0.0,
                        dense_topk_mean=float(np.mean(sims)) if sims else 0.0,
                        bm25_max=float(lexical.max()) if len(lexical) else 0.0,
                        best_chunk_id=found[0].id if found else None,
                    )
                )
        return results

    # -- build and status -----------------------------------------------------------------------

    def build(
        self, progress: bool = True, *, full: bool = False, now: datetime | None = None
    ) -> BuildReport:
        """Index what changed in the sources since the last build (everything if ``full``)."""
        return build(self, progress=progress, full=full, now=now)

    def cancel_build(self) -> None:
        """Stop a running build at its next batch and refuse new ones (the bot is stopping).

        What the build stored so far is kept; the next build picks up from there."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def status(self) -> KBStatus:
        counts = self.manifest.counts()
        documents = self.manifest.documents()
        fingerprint = hashlib.sha256(
            "\n".join(f"{key} {documents[key].sha256}" for key in sorted(documents)).encode()
        ).hexdigest()[:16]
        seconds = self.manifest.get_meta("last_build_seconds")
        dimension = self.manifest.get_meta("dimension")
        try:
            vectors = self.store.count()
        except Exception as exc:
            log.warning("cannot count the vectors: %s", exc)
            vectors = -1
        sizes = {
            "manifest": sum(
                _folder_size(self.root / n)
                for n in ("manifest.sqlite3", "manifest.sqlite3-wal", "manifest.sqlite3-shm")
            ),
            "bm25": _folder_size(self.bm25_dir),
        }
        if self.settings.store.kind == "persistent":
            sizes["chroma"] = _folder_size(self.root / "chroma")
        return KBStatus(
            documents=sum(d for d, _ in counts.values()),
            chunks=sum(c for _, c in counts.values()),
            vectors=vectors,
            collections=counts,
            last_build=self.manifest.get_meta("last_build"),
            last_build_seconds=float(seconds) if seconds else None,
            embedder=self.manifest.get_meta("embedder") or self.embedder.name,
            dimension=int(dimension) if dimension else None,
            store=self.store.describe(),
            sizes=sizes,
            fingerprint=fingerprint,
        )
