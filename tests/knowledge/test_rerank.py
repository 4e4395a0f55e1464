"""The optional reranker: an OpenAI/Jina-style /v1/rerank endpoint, or a local cross-encoder."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from knowledge.knowledge_base import KnowledgeBase
from knowledge.rerank import CrossEncoderReranker, HttpReranker, RerankerError
from knowledge.settings import RerankerSettings
from tests.knowledge.servers import FakeRerank, free_port

KB = Callable[..., KnowledgeBase]


@pytest.mark.integration
def test_search_is_reordered_by_the_rerank_endpoint(make_kb: KB, corpus: Path) -> None:
    with FakeRerank() as server:
        kb = make_kb(
            sources=[{"path": str(corpus)}],
            reranker={
                "kind": "http",
                "base_url": server.url,
                "model": "bge-reranker",
                "api_key": "sk-test",
                "top_n": 8,
            },
        )
        kb.build(progress=False)
        hits = kb.search("nan loss learning rate too high gradient clipping", k=3)

    request = server.requests[-1]
    assert request["model"] == "bge-reranker"
    assert request["query"] == "nan loss learning rate too high gradient clipping"
    assert len(request["documents"]) == 8
    assert server.headers[-1]["Authorization"] == "Bearer sk-test"
    assert hits[0].source == "corpus/faq.txt"
    assert [h.score for h in hits] == [h.scores["rerank"] for h in hits]
    assert hits[0].scores["rerank"] >= hits[1].scores["rerank"] >= hits[2].scores["rerank"]
    assert {"dense", "bm25", "weighted"} <= set(hits[0].scores)


@pytest.mark.integration
def test_rerank_errors_are_clear() -> None:
    with FakeRerank() as server:
        server.fail_with = 400
        reranker = HttpReranker(RerankerSettings(kind="http", base_url=server.url))
        with pytest.raises(RerankerError, match=r"/v1/rerank answered 400"):
            reranker.rerank("q", ["a"])
        server.fail_with = 503
        with pytest.raises(RerankerError, match="answered 503"):
            reranker.rerank("q", ["a"])
        assert len(server.requests) == 1 + 3  # 5xx is retried, 4xx is not
    down = HttpReranker(
        RerankerSettings(kind="http", base_url=f"http://127.0.0.1:{free_port()}/v1")
    )
    with pytest.raises(RerankerError, match="cannot reach"):
        down.rerank("q", ["a"])


@pytest.mark.unit
def test_cross_encoder_needs_a_local_folder(tmp_path: Path) -> None:
    missing = CrossEncoderReranker(
        RerankerSettings(kind="cross_encoder", model_path=tmp_path / "nope")
    )
    with pytest.raises(RerankerError, match="does not exist"):
        missing.rerank("q", ["a"])


@pytest.mark.unit
@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="sentence-transformers is installed here",
)
def test_cross_encoder_without_sentence_transformers_says_what_to_install(tmp_path: Path) -> None:
    reranker = CrossEncoderReranker(RerankerSettings(kind="cross_encoder", model_path=tmp_path))
    with pytest.raises(RerankerError, match="pip install sentence-transformers"):
        reranker.rerank("q", ["a"])
