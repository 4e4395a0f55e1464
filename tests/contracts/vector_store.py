"""The VectorStore contract (knowledge/store.py), inherited by the embedded chroma store and
a chroma server. A subclass provides the ``store`` fixture: an empty store."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.store import VectorStore


def unit(*rows: list[float]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


VECTORS = unit([1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0])
IDS = ["a", "b", "c", "d"]
META = [
    {"collection": "docs"},
    {"collection": "docs"},
    {"collection": "code"},
    {"collection": "docs"},
]


class VectorStoreContract:
    @pytest.fixture
    def store(self) -> VectorStore:
        raise NotImplementedError("an implementation's test class provides this fixture")

    def test_upsert_count_and_ids(self, store: VectorStore) -> None:
        assert store.count() == 0 and store.ids() == set()
        store.upsert(IDS, VECTORS, META)
        store.upsert(IDS[:1], VECTORS[:1], META[:1])  # the same id again replaces, not adds
        assert store.count() == 4
        assert store.ids() == set(IDS)

    def test_query_ranks_by_cosine_within_a_collection(self, store: VectorStore) -> None:
        store.upsert(IDS, VECTORS, META)
        [everything] = store.query(unit([1, 0.05, 0, 0]), k=3)
        assert [n.id for n in everything][:2] == ["a", "b"]
        assert everything[0].similarity == pytest.approx(0.9988, abs=1e-3)
        assert all(-1.0001 <= n.similarity <= 1.0001 for n in everything)
        [code] = store.query(unit([1, 0.05, 0, 0]), k=3, collection="code")
        assert [n.id for n in code] == ["c"]
        assert store.query(np.zeros((0, 4), dtype=np.float32), k=3) == []

    def test_embeddings_come_back_as_stored(self, store: VectorStore) -> None:
        store.upsert(IDS, VECTORS, META)
        found = store.embeddings(["c", "a", "missing"])
        assert set(found) == {"a", "c"}
        np.testing.assert_allclose(found["c"], VECTORS[2], atol=1e-6)
        assert store.embeddings([]) == {}

    def test_delete_and_reset(self, store: VectorStore) -> None:
        store.upsert(IDS, VECTORS, META)
        store.delete(["b", "d"])
        assert store.ids() == {"a", "c"}
        [found] = store.query(unit([1, 0, 0, 0]), k=4)
        assert {n.id for n in found} == {"a", "c"}
        store.reset()
        assert store.count() == 0
        assert store.query(unit([1, 0, 0, 0]), k=2) == [[]]

    def test_reopen_sees_what_was_written(self, store: VectorStore) -> None:
        store.upsert(IDS, VECTORS, META)
        store.reopen()
        assert store.count() == 4
        assert "chroma" in store.describe()
