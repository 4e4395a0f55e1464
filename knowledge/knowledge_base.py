"""The knowledge base as the rest of the bot sees it: open, warm up, build, search, status.

Opening is cheap (nothing is loaded); ``warm_up`` loads the embedder, opens chroma and loads the
BM25 index. Everything here is blocking: async callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import logging
import re
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
from knowledge.ranking import (
    Candidates,
    DocumentIndex,
    DocumentRanker,
    RankerError,
    probability,
    top_positions,
)
from knowledge.rerank import Reranker, build_reranker
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore, Neighbour, VectorStore

log = logging.getLogger(__name__)

# A ranked hit names this many further chunks of its document (``Hit.alternatives``).
ALTERNATIVES = 2


@dataclass(slots=True)
class Hit:
    """One ranked chunk. ``score`` is the learned ranker's probability that its document
    answers (the fused score with ``search.ranker: fusion``; the reranker's when one is set)."""

    chunk_id: str
    text: str
    source: str
    title: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    collection: str = "default"
    # The features that moved the ranker's score of this hit's document most (log-odds).
    features: dict[str, float] = field(default_factory=dict)
    # Set when this hit is the translation, in the asked language, of the document ranked here.
    translation_of: str = ""
    # The document's language, when the ranker knows it: "zh" or "en".
    language: str = ""
    # The document's next-best chunks (ids), where a quote may find more of the answer.
    alternatives: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Indexes:
    """What a search reads, all of one generation of the manifest."""

    bm25: BM25Index
    positions: dict[str, int]
    documents: DocumentIndex | None
    # Every chunk's vector in the BM25 index's order, for an exact dense search (None: chroma).
    vectors: np.ndarray | None


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


def without_overlap(before: str, after: str) -> str:
    """``after`` less the lines it starts with that end ``before``: the chunker starts a chunk
    with the last sentences of the one before, on lines of their own."""
    end = before.rstrip()
    cut = 0
    for line_break in re.finditer("\n", after):
        head = after[: line_break.start()].strip()
        if head and end.endswith(head):
            cut = line_break.end()
    return after[cut:].lstrip("\n") if cut else after


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
        self.ranker: DocumentRanker | None = None
        if settings.search.ranker == "learned":
            try:
                self.ranker = DocumentRanker.load()
            except RankerError as exc:
                log.warning("%s: searching with the plain fusion instead", exc)
        self._indexes: _Indexes | None = None
        self._generation: str | None = None
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

    @property
    def ranking_dir(self) -> Path:
        return self.root / "ranking"

    def warm_up(self) -> None:
        """Load the embedder, open chroma and load the indexes, so the first question is not
        slow."""
        self.embedder.warm_up()
        self.store.count()
        self._fresh()
        self.tokenizer("预热 warm up")
        if self.reranker is not None:
            self.reranker.warm_up()

    def close(self) -> None:
        with self._lock:
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None

    # -- the indexes ----------------------------------------------------------------------------

    @property
    def bm25(self) -> BM25Index:
        """The BM25 index of the latest build."""
        return self._fresh().bm25

    @property
    def document_index(self) -> DocumentIndex | None:
        """What the learned ranker knows of the documents (None with ``ranker: fusion``)."""
        return self._fresh().documents

    def set_indexes(
        self, bm25: BM25Index, documents: DocumentIndex | None, generation: str | None
    ) -> None:
        """Use these (a build in this process just made them)."""
        with self._lock:
            positions = {chunk_id: i for i, chunk_id in enumerate(bm25.ids)}
            self._indexes = _Indexes(bm25, positions, documents, self._vectors(bm25.ids))
            self._generation = generation

    def _fresh(self) -> _Indexes:
        """The indexes matching the manifest, reloaded if another process rebuilt them."""
        generation = self.manifest.get_meta("generation")
        with self._lock:
            if self._indexes is None or generation != self._generation:
                if self._indexes is not None:
                    # Another process re-indexed (this one sets the generation it builds).
                    self.store.reopen()
                bm25 = BM25Index(self.settings.bm25.k1, self.settings.bm25.b)
                if not bm25.load(self.bm25_dir):
                    ids, tokens, collections = self.manifest.all_tokens()
                    bm25.build(ids, tokens, collections)
                documents = None
                if self.ranker is not None and len(bm25):
                    documents = DocumentIndex.load(self.ranking_dir, generation)
                    if documents is None:
                        documents = DocumentIndex.build(
                            self.manifest, self.tokenizer, generation or ""
                        )
                self.set_indexes(bm25, documents, generation)
            assert self._indexes is not None
            return self._indexes

    def _vectors(self, ids: list[str]) -> np.ndarray | None:
        """Every chunk's vector, in order, for an exact dense search; None when the index is
        too big for it (or the store is missing some: a build is running)."""
        if not ids or len(ids) > self.settings.search.exact_max_chunks:
            return None
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 4096):
            found.update(self.store.embeddings(ids[start : start + 4096]))
        if len(found) < len(ids):
            log.info("the vector store lacks %d chunks: approximate search", len(ids) - len(found))
            return None
        return np.stack([found[i] for i in ids]).astype(np.float32)

    def _dense(
        self, indexes: _Indexes, vectors: np.ndarray, n: int, collection: str | None
    ) -> list[list[Neighbour]]:
        """The ``n`` chunks nearest to each query vector: exact when the vectors are in
        memory (and the same in every process), else chroma's approximate search."""
        if indexes.vectors is None:
            return self.store.query(vectors, n, collection)
        similarities = vectors.astype(np.float32) @ indexes.vectors.T
        if collection is not None:
            similarities[:, indexes.bm25.collections != collection] = -np.inf
        n = min(n, similarities.shape[1])
        out = []
        for row in similarities:
            best = np.argpartition(-row, n - 1)[:n] if n else np.array([], dtype=int)
            best = best[np.argsort(-row[best], kind="stable")]
            ids = indexes.bm25.ids
            out.append([Neighbour(ids[i], float(row[i])) for i in best if np.isfinite(row[i])])
        return out

    # -- search ---------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        collection: str | None = None,
        language: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for the query: dense + BM25, then documents ranked by the
        learned ranker (or chunks by the fused score), then the reranker if one is set.

        With the learned ranker, the best chunk of each of the best documents comes first, then
        their further chunks. A page and its translation count as one document: with
        ``language`` ("zh", "en") the one in that language is shown, else the better ranked."""
        indexes = self._fresh()
        if not len(indexes.bm25):
            return []
        documents, ranker = indexes.documents, self.ranker
        if ranker is not None and documents is not None:
            hits = self._ranked(indexes, documents, ranker, query, k, collection, language)
        else:
            hits = self._fused(indexes, query, k, collection)
        if self.reranker is not None and hits:
            reranked = self.reranker.rerank(query, [f"{h.title}\n{h.text}" for h in hits])
            for hit, score in zip(hits, reranked, strict=True):
                hit.scores["rerank"] = score
                hit.score = score
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def _kept(self, k: int) -> int:
        """Hits to find: the reranker's share when one is set."""
        return max(self.settings.reranker.top_n, k) if self.reranker is not None else k

    def _fused(self, indexes: _Indexes, query: str, k: int, collection: str | None) -> list[Hit]:
        """Chunks by the fused score alone (``search.ranker: fusion``)."""
        settings = self.settings.search
        n = max(settings.candidates, k)
        vector = self.embedder.embed_query([query])
        dense = {nb.id: nb.similarity for nb in self._dense(indexes, vector, n, collection)[0]}
        top, all_bm25 = indexes.bm25.top(self.tokenizer(query), n, collection)
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
        positions = indexes.positions
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
        order = sorted(candidates, key=lambda c: -fused.get(c, 0.0))[: self._kept(k)]
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
        return hits

    def use_ranker(self, ranker: DocumentRanker) -> None:
        """Rank with these weights (the benchmark that fits them)."""
        with self._lock:
            self.ranker = ranker
            self._indexes = None

    def rank_documents(
        self, query: str, collection: str | None = None
    ) -> tuple[Candidates, np.ndarray]:
        """The candidate documents of a question with their features, and the ranker's score
        of each (for the benchmark that fits and measures the ranker)."""
        indexes = self._fresh()
        if self.ranker is None or indexes.documents is None:
            raise RankerError("the learned ranker is not in use")
        candidates, _, _ = self._candidates(
            indexes, indexes.documents, self.ranker, query, collection
        )
        return candidates, self.ranker.score(candidates.features, self._neutral(indexes.documents))

    def _neutral(self, documents: DocumentIndex) -> tuple[str, ...]:
        # The language prior was learned on a corpus of translated pages, where a question's
        # answer often exists in both languages; without any, it would only push questions
        # toward pages in the other language.
        return () if documents.twin_pairs else ("same_lang",)

    def _candidates(
        self,
        indexes: _Indexes,
        documents: DocumentIndex,
        ranker: DocumentRanker,
        query: str,
        collection: str | None,
    ) -> tuple[Candidates, np.ndarray, np.ndarray]:
        """The candidate documents, the question vector and every chunk's expanded BM25."""
        n = self.settings.search.candidates
        vector = self.embedder.embed_query([query])
        tokens = self.tokenizer(query)
        translated = documents.dictionary.translate(tokens)
        bm = indexes.bm25.scores(tokens, collection)
        bmx = bm
        if translated:
            bmx = bm + ranker.expansion_weight * indexes.bm25.scores(translated, collection)
        dense_top = {nb.id: nb.similarity for nb in self._dense(indexes, vector, n, collection)[0]}
        pool = {indexes.positions[c] for c in dense_top if c in indexes.positions}
        pool.update(int(i) for i in top_positions(bm, n))
        pool.update(int(i) for i in top_positions(bmx, n))
        positions = np.array(sorted(pool), dtype=np.int64)
        ids = indexes.bm25.ids
        dense = self._similarities(indexes, vector[0], [ids[i] for i in positions], dense_top)
        candidates = documents.candidates(
            query,
            tokens,
            translated,
            positions,
            dense,
            bm,
            bmx,
            ranker.dense_weight,
            ranker.expansion_weight,
            collection,
            lambda chunks: self._texts(indexes, chunks),
        )
        return candidates, vector[0], bmx

    def _texts(self, indexes: _Indexes, chunks: list[int]) -> dict[int, str]:
        """Chunks' headings and text, by position."""
        ids = indexes.bm25.ids
        rows = self.manifest.chunks([ids[c] for c in chunks])
        return {c: f"{rows[ids[c]].title}\n{rows[ids[c]].text}" for c in chunks if ids[c] in rows}

    def _similarities(
        self,
        indexes: _Indexes,
        vector: np.ndarray,
        chunk_ids: list[str],
        known: dict[str, float] | None = None,
    ) -> np.ndarray:
        """The question's cosine to each chunk (from memory, or fetched from the store)."""
        if indexes.vectors is not None:
            rows = [indexes.positions[c] for c in chunk_ids]
            return indexes.vectors[rows] @ vector.astype(np.float32)
        known = known or {}
        missing = [c for c in chunk_ids if c not in known]
        fetched = {c: float(e @ vector) for c, e in self.store.embeddings(missing).items()}
        return np.array([known.get(c, fetched.get(c, 0.0)) for c in chunk_ids], dtype=float)

    def _ranked(
        self,
        indexes: _Indexes,
        documents: DocumentIndex,
        ranker: DocumentRanker,
        query: str,
        k: int,
        collection: str | None,
        language: str | None,
    ) -> list[Hit]:
        """Documents by the learned ranker; each document's chunks by their fused score."""
        candidates, vector, bmx = self._candidates(indexes, documents, ranker, query, collection)
        if not candidates.documents:
            return []
        neutral = self._neutral(documents)
        scores = ranker.score(candidates.features, neutral)
        order = np.argsort(-scores, kind="stable")
        kept = self._kept(k)
        # (document, its chunks best first, score, row of features, the document it translates)
        ranked: list[tuple[int, list[int], float, int, int | None]] = []
        seen: set[int] = set()
        for row in order[:kept]:
            document = candidates.documents[row]
            chunks = candidates.chunks[row]
            translated_from = None
            twin = int(documents.twin[document])
            if (
                language is not None
                and documents.language(document) != language
                and twin >= 0
                and (collection is None or documents.collections[twin] == collection)
            ):
                twin_chunks = self._twin_chunks(indexes, documents, candidates, twin, vector, bmx)
                if twin_chunks:  # (a translation with no text has no chunks)
                    translated_from, document, chunks = document, twin, twin_chunks
            # One page of a translated pair: the one in the asked language, else the better
            # ranked (the other says the same and would take a place of another page).
            if document in seen or (language is None and twin in seen):
                continue
            seen.add(document)
            ranked.append((document, chunks, float(scores[row]), int(row), translated_from))
        # The best chunk of each document first, then the documents' further chunks.
        picks = [(entry, entry[1][0]) for entry in ranked]
        picks += [(entry, chunk) for entry in ranked for chunk in entry[1][1:]]
        picks = picks[:kept]
        ids = indexes.bm25.ids
        rows = self.manifest.chunks([ids[chunk] for _, chunk in picks])
        plain = indexes.bm25.scores(self.tokenizer(query), collection)
        dense = self._similarities(indexes, vector, [ids[chunk] for _, chunk in picks])
        hits = []
        for (entry, chunk), cosine in zip(picks, dense, strict=True):
            document, chunks, score, row, translated_from = entry
            found = rows.get(ids[chunk])
            if found is None:  # in chroma but not in the manifest: a build is running
                continue
            chance = probability(score)
            hits.append(
                Hit(
                    chunk_id=found.id,
                    text=found.text,
                    source=found.source,
                    title=found.title,
                    score=chance,
                    scores={
                        "dense": float(cosine),
                        "bm25": float(plain[chunk]),
                        "weighted": round(candidates.fused.get(chunk, 0.0), 6),
                        "ranker": chance,
                    },
                    collection=found.collection,
                    features=ranker.contributions(candidates.features, row, neutral),
                    translation_of=(
                        documents.sources[translated_from] if translated_from is not None else ""
                    ),
                    language=documents.language(document),
                    alternatives=[ids[c] for c in chunks if c != chunk][:ALTERNATIVES],
                )
            )
        return hits

    def _twin_chunks(
        self,
        indexes: _Indexes,
        documents: DocumentIndex,
        candidates: Candidates,
        twin: int,
        vector: np.ndarray,
        bmx: np.ndarray,
    ) -> list[int]:
        """The translation's chunks, best first by the same fused score (scaled like the
        candidates')."""
        chunks = documents.chunks_of(twin)
        ids = indexes.bm25.ids
        dense = self._similarities(indexes, vector, [ids[c] for c in chunks])
        pool = np.array(list(candidates.fused), dtype=np.int64)
        pool_dense = self._similarities(indexes, vector, [ids[c] for c in pool])
        low, high = float(pool_dense.min()), float(pool_dense.max())
        dense_scaled = np.clip((dense - low) / (high - low), 0, 1) if high > low else dense * 0
        low, high = float(bmx[pool].min()), float(bmx[pool].max())
        bm_scaled = np.clip((bmx[chunks] - low) / (high - low), 0, 1) if high > low else dense * 0
        w = self.ranker.dense_weight if self.ranker is not None else 0.4
        fused = w * dense_scaled + (1 - w) * bm_scaled
        for chunk, value in zip(chunks, fused, strict=True):
            candidates.fused.setdefault(int(chunk), float(value))
        return [int(chunks[i]) for i in np.argsort(-fused, kind="stable")]

    def read_on(self, chunk_id: str, chars: int) -> str:
        """The text that follows a chunk in its section, whole chunks until about ``chars``
        characters: the next chunks of its document while they have its heading or a
        sub-heading of it, less the sentences each repeats of the one before (the chunker's
        overlap). Empty when the section ends with the chunk. A quote that reaches the end of
        a chunk reads on, as a reader would: the sentence that answers often follows the cut."""
        row = self.manifest.chunks([chunk_id]).get(chunk_id)
        if row is None:
            return ""
        parts: list[str] = []
        before, size = row, 0
        while size < chars:
            after = self.manifest.following(before.id)
            if after is None or not (
                after.title == row.title or after.title.startswith(row.title + " > ")
            ):
                break
            text = without_overlap(before.text, after.text)
            parts.append(text)
            before, size = after, size + len(text)
        return "\n\n".join(parts)

    def term_weights(self, query: str) -> list[tuple[set[str], float]]:
        """The query's distinct BM25 terms, each with its translation (when the corpus taught
        one) and its IDF over the chunks: how much finding it says about a passage's sentence
        (unknown terms weigh nothing; without the learned ranker's statistics, all weigh 1)."""
        documents = self._fresh().documents
        out = []
        for token in dict.fromkeys(self.tokenizer(query)):
            if documents is None:
                out.append(({token}, 1.0))
                continue
            term = documents.term_id.get(token)
            if term is None:
                continue
            out.append((documents.dictionary.alternatives(token), documents.idf(term)))
        return out

    def similarity(
        self, queries: list[str], collection: str | None = None, k: int = 5
    ) -> list[KBScores]:
        """Per query: best and top-k mean cosine to the chunks, best BM25 score, best chunk."""
        if not queries:
            return []
        indexes = self._fresh()
        vectors = self.embedder.embed_query(queries)
        results: list[KBScores] = []
        for start in range(0, len(queries), 256):
            part = vectors[start : start + 256]
            neighbours = self._dense(indexes, part, k, collection)
            for offset, found in enumerate(neighbours):
                query = queries[start + offset]
                lexical = indexes.bm25.scores(self.tokenizer(query), collection)
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
