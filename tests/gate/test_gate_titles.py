"""The knowledge base's headings as a feature: read from the index, embedded once, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.config import load_config
from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.features import TitleIndex, e5_query_embedder, kb_headings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Counting:
    """The real e5 embedder, counting what it is asked to embed."""

    def __init__(self) -> None:
        self.inner = e5_query_embedder()
        self.name = self.inner.name
        self.seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.embed(texts)


def test_headings_come_from_the_index_in_every_part(indexed: Path) -> None:
    config = load_config(indexed)
    kb = KnowledgeBase.open(config.knowledge, config.work_dir)
    try:
        headings = kb_headings(kb)
    finally:
        kb.close()
    # Chunk titles are heading paths ("Installing MMFoo > Install from source"): each part
    # counts, once (small sections share a chunk, so not every heading has its own).
    assert {"Installing MMFoo", "Install from source", "Training a detector", "模型部署"} <= set(
        headings
    )
    assert len(headings) == len(set(headings))


def test_only_new_headings_are_embedded_and_scores_follow_the_topic(tmp_path: Path) -> None:
    cache = tmp_path / "titles.npz"
    embedder = Counting()
    first = TitleIndex.build(["Install with pip", "Out of memory"], embedder, cache)
    again = TitleIndex.build(["Install with pip", "Out of memory", "导出 ONNX"], embedder, cache)
    assert embedder.seen == ["Install with pip", "Out of memory", "导出 ONNX"]
    assert np.allclose(first.vectors, again.vectors[:2])
    loaded = TitleIndex.load(cache, embedder.name)
    assert loaded is not None and loaded.texts == again.texts
    assert TitleIndex.load(cache, "another-embedder") is None

    queries = embedder.inner.embed(["how to install it with pip?", "哈哈 周末去哪玩"])
    scores = loaded.scores(queries)
    assert scores.shape == (2, 2)
    assert scores[0, 0] > scores[1, 0]
