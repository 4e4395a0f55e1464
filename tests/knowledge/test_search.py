"""Hybrid search finds the passage that answers a question, in English and in Chinese."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from knowledge.knowledge_base import KnowledgeBase

pytestmark = pytest.mark.integration

KB = Callable[..., KnowledgeBase]

QUESTIONS = [
    ("How do I install the package with pip?", "corpus/en/install.md", "Installation"),
    ("training stopped with CUDA out of memory", "corpus/faq.txt", ""),
    ("how to change the learning rate schedule", "corpus/en/config.md", "Learning rate"),
    ("how do I resume training from a checkpoint", "corpus/en/manual.pdf", "p. 1"),
    ("which version added rotated boxes", "corpus/en/changelog.html", "Version 3.2.0"),
    ("how is the mAP computed on the validation set", "corpus/en/evaluation.rst", "mAP"),
    ("what error does build_detector raise for an unknown type", "corpus/builder.py", "build_"),
    ("TensorRT 推理引擎怎么构建？", "corpus/zh/部署.md", "TensorRT"),
    ("没有显卡能不能在 CPU 上推理", "corpus/zh/部署.md", "CPU"),
    ("自定义数据集的标注文件是什么格式", "corpus/zh/数据集.md", "COCO"),
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, use_embedder: object) -> Iterator[KnowledgeBase]:
    from knowledge.settings import KnowledgeSettings
    from tests.knowledge.conftest import DATA

    root = tmp_path_factory.mktemp("search")
    settings = KnowledgeSettings.model_validate(
        {"sources": [{"path": str(DATA / "corpus")}], "chunking": {"max_tokens": 96}}
    )
    kb = KnowledgeBase(settings, root / "work", embedder=use_embedder)  # type: ignore[arg-type]
    kb.build(progress=False)
    yield kb
    kb.close()


def variant(kb: KnowledgeBase, **search: object) -> KnowledgeBase:
    """Another knowledge base over the same index, with other search settings."""
    settings = kb.settings.model_copy(
        update={"search": kb.settings.search.model_copy(update=search)}
    )
    return KnowledgeBase(settings, kb.root.parent, embedder=kb.embedder)


@pytest.mark.parametrize("ranker", ["learned", "fusion"])
@pytest.mark.parametrize(("question", "source", "title"), QUESTIONS)
def test_the_answering_passage_comes_first(
    kb: KnowledgeBase, ranker: str, question: str, source: str, title: str
) -> None:
    searcher = kb if ranker == "learned" else variant(kb, ranker=ranker)
    hits = searcher.search(question, k=3)
    assert hits[0].source == source, [(h.source, h.title) for h in hits]
    assert title in hits[0].title
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    if ranker == "learned":
        # One hit per document while there are documents left, each with the ranker's
        # probability and the features that weighed most.
        assert len({h.source for h in hits}) == len(hits)
        assert set(hits[0].scores) == {"dense", "bm25", "weighted", "ranker"}
        assert hits[0].score == hits[0].scores["ranker"]
        assert 0 < hits[0].score < 1 and len(hits[0].features) == 3
    else:
        assert set(hits[0].scores) == {"dense", "bm25", "weighted"}
        assert hits[0].score == hits[0].scores["weighted"]
        searcher.close()


def test_hits_carry_sources_for_citations(kb: KnowledgeBase) -> None:
    chunk = kb.search("pip install mmfoo", k=1)[0]
    assert chunk.source == "corpus/en/install.md"
    assert chunk.title.startswith("Installation")
    assert "pip install mmfoo" in chunk.text
    assert chunk.scores["bm25"] > 0


def test_a_hit_names_its_documents_next_best_chunks(kb: KnowledgeBase) -> None:
    """Where a quote may find the rest of the answer: other chunks of the same page."""
    hit = kb.search("how to change the learning rate schedule", k=1)[0]
    assert hit.source == "corpus/en/config.md"
    assert 1 <= len(hit.alternatives) <= 2 and hit.chunk_id not in hit.alternatives
    rows = kb.manifest.chunks(hit.alternatives)
    assert {row.source for row in rows.values()} == {hit.source}


def test_reciprocal_rank_fusion_ranks_too(kb: KnowledgeBase) -> None:
    rrf = variant(kb, ranker="fusion", fusion="rrf")
    hits = rrf.search("TensorRT 推理引擎怎么构建？", k=3)
    assert hits[0].source == "corpus/zh/部署.md"
    assert hits[0].score == hits[0].scores["rrf"] <= 2 / 61
    rrf.close()


def test_collections_filter(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(
        sources=[
            {"path": str(corpus / "en"), "collection": "english"},
            {"path": str(corpus / "zh"), "collection": "chinese"},
        ]
    )
    kb.build(progress=False)
    assert {h.collection for h in kb.search("install", k=10, collection="chinese")} == {"chinese"}
    assert {h.source for h in kb.search("TensorRT", k=10, collection="english")} <= {
        f"en/{p.name}" for p in (corpus / "en").iterdir()
    }


def test_similarity_scores_for_the_rejection_gate(kb: KnowledgeBase) -> None:
    on_topic, chitchat = kb.similarity(["how do I install mmfoo with pip", "哈哈哈 晚上吃什么"])
    assert on_topic.dense_max > chitchat.dense_max
    assert on_topic.bm25_max > 0 and chitchat.bm25_max == 0
    assert on_topic.dense_max >= on_topic.dense_topk_mean
    rows = kb.manifest.chunks([on_topic.best_chunk_id or ""])
    assert rows[on_topic.best_chunk_id or ""].source == "corpus/en/install.md"


def test_an_empty_knowledge_base_finds_nothing(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    assert kb.search("anything") == []
    assert kb.similarity(["anything"])[0].best_chunk_id is None


SECTIONED = """# Training guide

## Resume an interrupted training run

A training run can stop halfway: the machine reboots, the job is preempted, or the GPU runs out \
of memory. The trainer saves a checkpoint at the end of every epoch into the work directory, \
next to the log files. Each checkpoint holds the model weights, the optimizer state and the \
learning-rate schedule. Nothing of the finished epochs is lost when the run stops.

Start the same command again with the resume flag and the checkpoint to continue from.
Without a path the flag picks the latest checkpoint of the work directory.

## Evaluate a checkpoint

Run the test script on a checkpoint to print the metrics on the validation set.
"""


def test_reading_on_from_a_chunk_stays_in_its_section(make_kb: KB, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "training.md").write_text(SECTIONED, encoding="utf-8")
    kb = make_kb(sources=[{"path": str(docs)}], chunking={"max_tokens": 64, "overlap_tokens": 32})
    kb.build(progress=False)
    rows = sorted(
        kb.manifest.chunks(sorted(kb.manifest.all_chunk_ids())).values(),
        key=lambda row: row.ordinal,
    )
    first, last_of_section = rows[0], rows[-2]
    assert len(rows) >= 4 and first.title == last_of_section.title != rows[-1].title

    section = first.text + "\n\n" + kb.read_on(first.id, 10_000)
    flat = " ".join(section.split())
    # The whole section once, in order: the chunks' overlapping sentences are not repeated.
    for sentence in [
        "The trainer saves a checkpoint",
        "Each checkpoint holds the model weights",
        "Nothing of the finished epochs is lost",
        "Start the same command again",
        "Without a path the flag picks",
    ]:
        assert flat.count(sentence) == 1, sentence
    assert flat.index("Each checkpoint") < flat.index("Start the same command")
    assert "validation set" not in section  # the next section is not read
    # The chunker did repeat sentences: the raw chunks hold one of them twice.
    raw = " ".join(" ".join(row.text for row in rows).split())
    assert any(raw.count(s) == 2 for s in ["Each checkpoint", "Nothing of the", "Start the same"])
    # Reading on stops after the chunk that reaches the wanted length.
    one = kb.read_on(first.id, 1)
    assert one and section.startswith(first.text + "\n\n" + one) and len(one) < len(section)
    assert kb.read_on(last_of_section.id, 10_000) == ""
    assert kb.read_on("no-such-chunk", 100) == ""
