"""The Embedder contract (knowledge/embedders.py): float32, L2-normalised rows of a fixed
dimension, empty input allowed, queries close to their own language's twin. A subclass provides
the ``embedder`` fixture."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.embedders import Embedder

TEXTS = ["How do I install mmdetection?", "怎么安装 mmdetection？", "The weather is nice today."]


def check_rows(vectors: np.ndarray, rows: int, dimension: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (rows, dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)


class EmbedderContract:
    # Whether the model is multilingual enough that a question and its translation are closer
    # to each other than to an unrelated sentence.
    multilingual = True

    @pytest.fixture
    def embedder(self) -> Embedder:
        raise NotImplementedError("an implementation's test class provides this fixture")

    def test_passages_and_queries_are_normalised_rows(self, embedder: Embedder) -> None:
        embedder.warm_up()
        dimension = embedder.dimension
        check_rows(embedder.embed(TEXTS), 3, dimension)
        check_rows(embedder.embed_query(TEXTS), 3, dimension)
        assert embedder.embed([]).shape == (0, dimension)
        assert embedder.embed_query([]).shape == (0, dimension)
        assert embedder.name and embedder.max_tokens > 0

    def test_batches_give_the_rows_of_single_calls(self, embedder: Embedder) -> None:
        together = embedder.embed(TEXTS)
        alone = np.concatenate([embedder.embed([t]) for t in TEXTS])
        np.testing.assert_allclose(together, alone, atol=1e-4)

    def test_meaning_is_closer_than_chance(self, embedder: Embedder) -> None:
        if not self.multilingual:
            pytest.skip("not a multilingual model")
        english, chinese, weather = embedder.embed_query(TEXTS)
        assert english @ chinese > english @ weather
