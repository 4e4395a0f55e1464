"""Server mode: the same knowledge base against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from knowledge.knowledge_base import KnowledgeBase
from knowledge.store import StoreError
from tests.knowledge.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KB = Callable[..., KnowledgeBase]


def test_build_search_and_incremental_update_on_a_chroma_server(
    make_kb: KB, corpus: Path, chroma_server: int
) -> None:
    store = {"kind": "http", "host": "127.0.0.1", "port": chroma_server, "collection": "docs-1"}
    kb = make_kb(sources=[{"path": str(corpus)}], store=store)
    report = kb.build(progress=False)
    assert report.documents == 9
    assert kb.store.count() == report.chunks
    assert not (kb.root / "chroma").exists()  # nothing embedded on this side
    assert kb.status().store == f"chroma http http://127.0.0.1:{chroma_server} collection docs-1"

    hits = kb.search("如何把模型部署到 TensorRT？", k=3)
    assert hits[0].source == "corpus/zh/部署.md"
    assert hits[0].scores["dense"] > 0.2

    faq = kb.manifest.chunk_ids("default:corpus/faq.txt")
    (corpus / "faq.txt").unlink()
    report = kb.build(progress=False)
    assert report.removed == 1
    assert not faq & kb.store.ids()
    assert kb.store.count() == report.chunks


def test_an_unreachable_server_is_one_clear_error(make_kb: KB, corpus: Path) -> None:
    store = {"kind": "http", "host": "127.0.0.1", "port": free_port()}
    kb = make_kb(sources=[{"path": str(corpus)}], store=store)
    with pytest.raises(StoreError, match=r"cannot open chroma http http://127.0.0.1:\d+"):
        kb.build(progress=False)
