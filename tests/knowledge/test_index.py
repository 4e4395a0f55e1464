"""Incremental indexing: unchanged files cost nothing, changed ones are re-embedded, deleted ones
leave both indexes (chroma and BM25), and nothing a broken file or a crash does loses data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from knowledge.embedders import Embedder
from knowledge.knowledge_base import KnowledgeBase
from knowledge.sources import SourceError

pytestmark = pytest.mark.integration

KB = Callable[..., KnowledgeBase]


class CountingEmbedder:
    """The real USE embedder, counting what it is asked to embed (and failing on request)."""

    def __init__(self, inner: Embedder, fail_after: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_tokens = inner.max_tokens
        self.texts: list[str] = []
        self.fail_after = fail_after

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and len(self.texts) >= self.fail_after:
            raise RuntimeError("embedder crashed")
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_query(texts)


def assert_consistent(kb: KnowledgeBase) -> set[str]:
    """The manifest, chroma and BM25 hold exactly the same chunks."""
    ids = kb.manifest.all_chunk_ids()
    assert kb.store.ids() == ids
    assert set(kb.bm25.ids) == ids
    assert len(kb.bm25.ids) == len(ids)
    documents = kb.document_index
    assert documents is not None and len(documents.chunk_document) == len(ids)
    assert set(documents.keys) == set(kb.manifest.documents())
    return ids


def sources_of(kb: KnowledgeBase, query: str, k: int = 5) -> list[str]:
    return [hit.source for hit in kb.search(query, k=k)]


def test_first_build_indexes_every_kind_and_explains_what_it_skipped(
    make_kb: KB, corpus: Path, broken: Path
) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}, {"path": str(broken), "collection": "old"}])
    report = kb.build(progress=False)

    assert report.rebuilt and report.reason == "first build"
    assert report.documents == 10 and report.added == 10
    assert report.chunks == report.chunks_embedded > 10
    skipped = {s.source: s.reason for s in report.skipped}
    assert skipped == {
        "broken/binary.md": "binary file (contains NUL bytes)",
        "broken/empty.txt": "no text in the file",
        "broken/encrypted.pdf": "encrypted PDF (needs a password)",
        "broken/truncated.pdf": skipped["broken/truncated.pdf"],
    }
    assert skipped["broken/truncated.pdf"].startswith("broken PDF")
    assert report.unsupported == {".png": 1}
    summary = "\n".join(report.summary())
    assert "broken/encrypted.pdf: encrypted PDF" in summary
    assert "unsupported types): 1 files (.png 1)" in summary
    assert_consistent(kb)
    kinds = {row.source: row.kind for row in kb.manifest.documents().values()}
    assert kinds["corpus/en/manual.pdf"] == "pdf"
    assert kinds["corpus/en/changelog.html"] == "html"
    assert kinds["corpus/builder.py"] == "code"
    assert kinds["broken/gbk.md"] == "markdown"
    status = kb.status()
    assert status.documents == 10 and status.chunks == report.chunks == status.vectors
    assert status.collections["old"][0] == 1


def test_unchanged_tree_embeds_nothing(
    make_kb: KB, corpus: Path, use_embedder: Embedder, tmp_path: Path
) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    first = kb.build(progress=False)
    counting = CountingEmbedder(use_embedder)
    again = KnowledgeBase(kb.settings, tmp_path / "work", embedder=counting)
    report = again.build(progress=False)
    assert counting.texts == []
    assert report.unchanged == first.documents and report.chunks_embedded == 0
    assert not report.changed_anything and not report.rebuilt
    assert report.chunks == first.chunks
    again.close()


def test_add_change_and_delete_update_both_indexes(
    make_kb: KB, corpus: Path, use_embedder: Embedder, tmp_path: Path
) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    kb.build(progress=False)
    before = assert_consistent(kb)
    faq_ids = kb.manifest.chunk_ids("default:corpus/faq.txt")
    install_ids = kb.manifest.chunk_ids("default:corpus/en/install.md")
    assert "corpus/faq.txt" in sources_of(kb, "CUDA out of memory during training")

    (corpus / "en" / "tensorboard.md").write_text(
        "# Visualisation\n\nLog training curves to TensorBoard with the TensorboardVisBackend "
        "in the visualizer config, then run tensorboard --logdir work_dirs.\n",
        encoding="utf-8",
    )
    install = corpus / "en" / "install.md"
    install.write_text(
        install.read_text(encoding="utf-8").replace(
            "## Install from source",
            "## Install with conda\n\nRun conda install -c conda-forge mmfoo to get the package "
            "from conda-forge instead of PyPI.\n\n## Install from source",
        ),
        encoding="utf-8",
    )
    (corpus / "faq.txt").unlink()

    counting = CountingEmbedder(use_embedder)
    kb2 = KnowledgeBase(kb.settings, tmp_path / "work", embedder=counting)
    report = kb2.build(progress=False)

    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    after = assert_consistent(kb2)
    # the deleted file is gone from chroma, BM25 and the manifest
    assert not faq_ids & after
    assert "corpus/faq.txt" not in sources_of(kb2, "CUDA out of memory during training", k=10)
    # only the new file and the changed part of install.md were embedded
    assert any("TensorBoard" in t for t in counting.texts)
    assert any("conda install" in t for t in counting.texts)
    assert not any("Frequently asked questions" in t for t in counting.texts)
    assert not any("Learning rate schedule" in t for t in counting.texts)
    new_install_ids = kb2.manifest.chunk_ids("default:corpus/en/install.md")
    assert new_install_ids != install_ids
    assert report.chunks_removed == len(faq_ids) + len(install_ids - new_install_ids)
    assert len(after) == len(before) - report.chunks_removed + report.chunks_embedded
    # and the new passages are found, by both retrievers
    hits = kb2.search("how do I view training curves in tensorboard", k=3)
    assert hits[0].source == "corpus/en/tensorboard.md"
    assert hits[0].scores["bm25"] > 0 and hits[0].scores["dense"] > 0
    assert kb2.search("conda-forge", k=1)[0].source == "corpus/en/install.md"
    kb2.close()


def test_a_file_that_breaks_keeps_its_indexed_version(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    kb.build(progress=False)
    ids = kb.manifest.chunk_ids("default:corpus/en/install.md")
    (corpus / "en" / "install.md").write_bytes(b"\x00\x01 half-written \x00")
    report = kb.build(progress=False)
    assert [s.reason for s in report.skipped] == [
        "binary file (contains NUL bytes) (the version indexed before is kept)"
    ]
    assert report.removed == 0
    assert kb.manifest.chunk_ids("default:corpus/en/install.md") == ids
    assert_consistent(kb)


def test_a_missing_source_is_an_error_that_deletes_nothing(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    kb.build(progress=False)
    count = kb.status().chunks
    gone = corpus.parent / "moved"
    corpus.rename(gone)
    with pytest.raises(SourceError, match=r"knowledge.sources\[0\].path: .*corpus does not exist"):
        kb.build(progress=False)
    assert kb.status().chunks == count
    # not even when a new chunk size would otherwise start the index afresh
    resized = make_kb(sources=[{"path": str(corpus)}], chunking={"max_tokens": 64})
    with pytest.raises(SourceError):
        resized.build(progress=False)
    assert resized.status().chunks == count


def test_an_interrupted_build_is_finished_by_the_next_one(
    make_kb: KB,
    corpus: Path,
    use_embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("knowledge.indexer.STORE_BATCH", 4)  # store every batch
    settings = {"sources": [{"path": str(corpus)}], "embedder": {"batch_size": 4}}
    crashing = CountingEmbedder(use_embedder, fail_after=8)
    kb = KnowledgeBase(make_kb(**settings).settings, tmp_path / "work", embedder=crashing)
    with pytest.raises(RuntimeError, match="embedder crashed"):
        kb.build(progress=False)
    kb.close()
    resumed = make_kb(**settings)
    report = resumed.build(progress=False)
    assert report.documents == 9
    # the documents that were complete before the crash were not embedded again
    assert report.chunks_embedded < report.chunks
    assert_consistent(resumed)


def test_changing_the_chunk_size_rebuilds_everything(make_kb: KB, corpus: Path) -> None:
    make_kb(sources=[{"path": str(corpus)}]).build(progress=False)
    report = make_kb(sources=[{"path": str(corpus)}], chunking={"max_tokens": 64}).build(
        progress=False
    )
    assert report.rebuilt and report.reason == "the embedder or chunking settings changed"
    assert report.chunks_embedded == report.chunks


def test_globs_and_size_limit(make_kb: KB, corpus: Path) -> None:
    kb = make_kb(
        sources=[{"path": str(corpus), "include": ["*.md", "*.pdf"], "exclude": ["zh/**"]}],
        max_file_mb=0.001,
    )
    report = kb.build(progress=False)
    assert {row.source for row in kb.manifest.documents().values()} == {
        "corpus/en/install.md",
        "corpus/en/config.md",
    }
    assert [(s.source, s.reason) for s in report.skipped] == [
        ("corpus/en/manual.pdf", "too large (0.0 MB > knowledge.max_file_mb 0.001 MB)")
    ]


def test_a_big_build_embeds_in_a_child_process_with_the_same_vectors(
    make_kb: KB, corpus: Path, use_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("knowledge.indexer.PROCESS_MIN_CHUNKS", 1)
    kb = make_kb(sources=[{"path": str(corpus)}], embedder={"batch_size": 8})
    report = kb.build(progress=False)
    assert report.chunks_embedded == report.chunks > 8
    assert report.embed_seconds > 0
    assert_consistent(kb)
    ids = sorted(kb.manifest.all_chunk_ids())[:5]
    rows = kb.manifest.chunks(ids)
    stored = kb.store.embeddings(ids)
    for chunk_id in ids:
        row = rows[chunk_id]
        local = use_embedder.embed([f"{row.title}\n{row.text}"])[0]
        assert float(stored[chunk_id] @ local) > 0.999


@pytest.mark.slow
def test_a_build_by_another_process_is_seen_by_a_running_knowledge_base(
    make_kb: KB, corpus: Path, tmp_path: Path
) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    kb.build(progress=False)
    assert kb.search("pip install mmfoo", k=1)[0].source == "corpus/en/install.md"
    (corpus / "en" / "tensorboard.md").write_text(
        "# Visualisation\n\nLog training curves to TensorBoard with the TensorboardVisBackend.\n",
        encoding="utf-8",
    )
    config = tmp_path / "bot.yaml"
    config.write_text(
        json.dumps(
            {
                "bot": {"work_dir": str(tmp_path / "work")},
                "knowledge": kb.settings.model_dump(mode="json"),
            }
        ),
        encoding="utf-8",
    )
    command = Path(sys.executable).with_name("huixiangdou-bot")
    done = subprocess.run(
        [str(command), "kb", "build", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "added 1" in done.stdout
    hits = kb.search("view training curves in tensorboard", k=3)
    assert hits[0].source == "corpus/en/tensorboard.md"
    assert hits[0].scores["dense"] > 0.3  # found by the vectors too, not only by BM25
