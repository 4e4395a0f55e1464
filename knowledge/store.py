"""A narrow vector-store interface over chromadb: add, query, delete, count.

Embedded (``PersistentClient`` under the work dir) by default, a chroma server (``HttpClient``)
by config. We always pass our own vectors: chroma's default embedding function would download a
model at run time, which fails offline, so the collection is opened with none. Telemetry is off.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knowledge.settings import StoreSettings

log = logging.getLogger(__name__)

ADD_BATCH = 2048


class StoreError(Exception):
    """The vector store cannot be reached or used; the message says what to fix."""


@dataclass(slots=True)
class Neighbour:
    id: str
    similarity: float  # cosine


class VectorStore(Protocol):
    def upsert(
        self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]
    ) -> None: ...

    def query(
        self, embeddings: np.ndarray, k: int, collection: str | None = None
    ) -> list[list[Neighbour]]: ...

    def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]: ...

    def delete(self, ids: list[str]) -> None: ...

    def ids(self) -> set[str]: ...

    def count(self) -> int: ...

    def reset(self) -> None: ...

    def reopen(self) -> None: ...

    def describe(self) -> str: ...


class ChromaStore:
    """One chroma collection; our chunk collections are a metadata field inside it."""

    def __init__(self, settings: StoreSettings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self._client: Any = None
        self._collection: Any = None
        # Two threads opening the same path at once (a search while the scheduled build
        # starts) get a half-started client from chroma's per-path cache: one opens it.
        self._open_lock = threading.Lock()

    def describe(self) -> str:
        if self.settings.kind == "http":
            scheme = "https" if self.settings.ssl else "http"
            where = f"{scheme}://{self.settings.host}:{self.settings.port}"
        else:
            where = str(self.path)
        return f"chroma {self.settings.kind} {where} collection {self.settings.collection}"

    @property
    def client(self) -> Any:
        with self._open_lock:
            return self._open()

    def _open(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings

            chroma_settings = Settings(anonymized_telemetry=False)
            settings = self.settings
            try:
                if settings.kind == "http":
                    headers = {}
                    if settings.api_key is not None:
                        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
                    self._client = chromadb.HttpClient(
                        host=settings.host,
                        port=settings.port,
                        ssl=settings.ssl,
                        headers=headers or None,
                        settings=chroma_settings,
                    )
                else:
                    self.path.mkdir(parents=True, exist_ok=True)
                    self._client = chromadb.PersistentClient(
                        path=str(self.path), settings=chroma_settings
                    )
            except Exception as exc:
                raise StoreError(f"cannot open {self.describe()}: {exc}") from None
        return self._client

    @property
    def collection(self) -> Any:
        if self._collection is None:
            try:
                self._collection = self.client.get_or_create_collection(
                    self.settings.collection,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                )
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot open {self.describe()}: {exc}") from None
        return self._collection

    def upsert(
        self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]
    ) -> None:
        for start in range(0, len(ids), ADD_BATCH):
            end = start + ADD_BATCH
            self.collection.upsert(
                ids=ids[start:end],
                embeddings=embeddings[start:end],
                metadatas=metadatas[start:end],
            )

    def query(
        self, embeddings: np.ndarray, k: int, collection: str | None = None
    ) -> list[list[Neighbour]]:
        if not len(embeddings):
            return []
        count = self.count()
        if count == 0:
            return [[] for _ in range(len(embeddings))]
        result = self.collection.query(
            query_embeddings=embeddings,
            n_results=min(k, count),
            where={"collection": collection} if collection else None,
            include=["distances"],
        )
        return [
            [Neighbour(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]
            for ids, distances in zip(result["ids"], result["distances"], strict=True)
        ]

    def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        result = self.collection.get(ids=ids, include=["embeddings"])
        return {
            i: np.asarray(e, dtype=np.float32)
            for i, e in zip(result["ids"], result["embeddings"], strict=True)
        }

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), ADD_BATCH):
            self.collection.delete(ids=ids[start : start + ADD_BATCH])

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset = 0
        while True:
            page = self.collection.get(include=[], limit=10_000, offset=offset)["ids"]
            found.update(page)
            if len(page) < 10_000:
                return found
            offset += len(page)

    def count(self) -> int:
        return int(self.collection.count())

    def reopen(self) -> None:
        """Forget the open handles, so the next call sees what another process wrote.

        Embedded chroma keeps its vector index in memory, cached per path for the whole
        process: after a `kb build` in another process, it would not find the new vectors."""
        if self._client is not None and self.settings.kind == "persistent":
            try:
                from chromadb.api.shared_system_client import SharedSystemClient

                SharedSystemClient._identifier_to_system.pop(self._client._identifier, None)
            except Exception as exc:  # a chroma version without this cache
                log.warning("cannot reload chroma's index (restart to see new vectors): %s", exc)
        self._client = None
        self._collection = None

    def reset(self) -> None:
        """Drop the collection (a different embedder or chunking makes every vector stale)."""
        client = self.client
        try:
            client.delete_collection(self.settings.collection)
        except Exception as exc:  # not there: nothing to drop
            log.debug("delete_collection: %s", exc)
        self._collection = None
