"""What is in the index: documents with their content hashes, chunks with their BM25 tokens.

A small SQLite file beside the vectors. The content hash is how a re-index knows a file is
unchanged; the tokens let the BM25 index be rebuilt without re-reading or re-tokenizing the
documents that did not change.

Why plain sqlite3 and not the bot's SQLAlchemy stack: this file is a cache of the index, not
the bot's data. It belongs to the index folder (deleted, copied and rebuilt with it, one per
worker like the BM25 files), never lives in PostgreSQL, has no migrations (a format change
rebuilds the index), and ``knowledge/`` must not depend on the bot's storage. Four tables
and bulk inserts of 16k rows need nothing sqlite3 lacks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    key TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document);
CREATE TABLE IF NOT EXISTS document_facts (
    document TEXT PRIMARY KEY,
    headings TEXT NOT NULL,
    cjk_share REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DocumentRow:
    key: str
    collection: str
    source: str
    path: str
    kind: str
    title: str
    sha256: str
    size: int
    chunks: int
    indexed_at: str


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    """What the ranker knows of a document besides its chunks (``knowledge.ranking``): its
    headings (level, text) in order, and the share of its characters that are Chinese."""

    headings: tuple[tuple[int, str], ...]
    cjk_share: float


# The columns of a ChunkRow, in its fields' order.
_CHUNK_COLUMNS = "id, document, ordinal, collection, source, title, text, tokens"


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: str
    document: str
    ordinal: int
    collection: str
    source: str
    title: str
    text: str
    tokens: str  # space-joined BM25 terms


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, **values: str) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # -- documents ------------------------------------------------------------------------------

    def documents(self) -> dict[str, DocumentRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, collection, source, path, kind, title, sha256, size, chunks, "
                "indexed_at FROM documents"
            ).fetchall()
        return {row[0]: DocumentRow(*row) for row in rows}

    def chunk_ids(self, document: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM chunks WHERE document = ?", (document,))
            return {row[0] for row in rows}

    def put_document(
        self, row: DocumentRow, ordinals: dict[str, int], facts: DocumentFacts
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.key,
                    row.collection,
                    row.source,
                    row.path,
                    row.kind,
                    row.title,
                    row.sha256,
                    row.size,
                    row.chunks,
                    row.indexed_at,
                ),
            )
            db.executemany(
                "UPDATE chunks SET ordinal = ? WHERE id = ?",
                [(ordinal, chunk_id) for chunk_id, ordinal in ordinals.items()],
            )
            db.execute(
                "INSERT OR REPLACE INTO document_facts VALUES (?, ?, ?)",
                (row.key, json.dumps(facts.headings, ensure_ascii=False), facts.cjk_share),
            )

    def delete_document(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM chunks WHERE document = ?", (key,))
            db.execute("DELETE FROM documents WHERE key = ?", (key,))
            db.execute("DELETE FROM document_facts WHERE document = ?", (key,))

    def facts(self) -> dict[str, DocumentFacts]:
        """Every document's facts (documents indexed by an older version have none)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT document, headings, cjk_share FROM document_facts"
            ).fetchall()
        return {
            key: DocumentFacts(tuple((int(lv), str(t)) for lv, t in json.loads(h)), float(share))
            for key, h, share in rows
        }

    # -- chunks ---------------------------------------------------------------------------------

    def put_chunks(self, rows: Iterable[ChunkRow]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [astuple(r) for r in rows],
            )

    def delete_chunks(self, ids: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in ids])

    def chunks(self, ids: list[str]) -> dict[str, ChunkRow]:
        found: dict[str, ChunkRow] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})",
                    part,
                ).fetchall()
                found.update((row[0], ChunkRow(*row)) for row in rows)
        return found

    def following(self, chunk_id: str) -> ChunkRow | None:
        """The chunk after this one in its document (None at the document's end)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE (document, ordinal) = "
                "(SELECT document, ordinal + 1 FROM chunks WHERE id = ?)",
                (chunk_id,),
            ).fetchone()
        return ChunkRow(*row) if row else None

    def all_tokens(self) -> tuple[list[str], list[list[str]], list[str]]:
        """Every chunk's id, BM25 terms and collection, in a stable order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, tokens, collection FROM chunks ORDER BY document, ordinal, id"
            ).fetchall()
        return [r[0] for r in rows], [r[1].split() for r in rows], [r[2] for r in rows]

    def all_chunk_documents(self) -> tuple[list[str], list[str]]:
        """Every chunk's document and title, in the order of ``all_tokens``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT document, title FROM chunks ORDER BY document, ordinal, id"
            ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def all_chunk_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM chunks")}

    def counts(self) -> dict[str, tuple[int, int]]:
        """Documents and chunks per collection."""
        with self._lock:
            docs = dict(
                self._db.execute("SELECT collection, count(*) FROM documents GROUP BY collection")
            )
            chunks = dict(
                self._db.execute("SELECT collection, count(*) FROM chunks GROUP BY collection")
            )
        return {c: (docs.get(c, 0), chunks.get(c, 0)) for c in sorted(set(docs) | set(chunks))}

    def clear(self) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM chunks")
            db.execute("DELETE FROM documents")
            db.execute("DELETE FROM document_facts")
