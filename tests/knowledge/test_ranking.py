"""The learned document ranker through the real knowledge base: translated pages teach it a
dictionary, a question finds the page written only in the other language, an answer can be
handed over in the asker's language, and a corpus without translations still ranks."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from knowledge.bilingual import BilingualDictionary, Page, aligned_sections, language_slot
from knowledge.bm25 import Tokenizer
from knowledge.knowledge_base import KnowledgeBase
from knowledge.ranking import (
    INDEX_FILE,
    DocumentIndex,
    identifiers,
    is_faq_page,
    reports_problem,
)
from tests.knowledge.conftest import DATA

pytestmark = pytest.mark.integration

KB = Callable[..., KnowledgeBase]


@pytest.fixture
def twins(tmp_path: Path) -> Path:
    """A tiny bilingual project: two translated pages and one page only in Chinese."""
    target = tmp_path / "twins"
    shutil.copytree(DATA / "twins", target)
    return target


def test_translation_file_names() -> None:
    assert language_slot("kb/docs/en/x.md") == ("kb/docs/{}/x.md", "en")
    assert language_slot("kb/docs/zh_cn/x.md") == ("kb/docs/{}/x.md", "zh")
    assert language_slot("repo/README_zh-CN.md") == ("repo/README.md", "zh")
    assert language_slot("repo/README.md") == ("repo/README.md", "")
    assert language_slot("repo/intro_en.md") == ("repo/intro.md", "en")
    assert language_slot("repo/intro_zh.md") == ("repo/intro.md", "zh")


def test_code_like_words_of_a_question() -> None:
    question = "MMDEPLOY_TARGET_BACKENDS 填哪些? init_cfg 里 Pretrained, mmdet.apis, ONNXRuntime"
    assert identifiers(question) == {
        "mmdeploy_target_backends",
        "init_cfg",
        "mmdet.apis",
        "onnxruntime",
    }
    assert identifiers("how do I install it with pip") == set()


def test_faq_pages_count_for_questions_that_report_a_problem() -> None:
    assert is_faq_page("mmdetection/docs/en/notes/faq.md")
    assert is_faq_page("mmyolo/docs/zh_cn/recommended_topics/troubleshooting_steps.md")
    assert is_faq_page("repo/FAQ/install.md")
    assert is_faq_page("项目/常见问题.md")
    assert not is_faq_page("mmdetection/docs/en/user_guides/train.md")
    # the folder a source was added from says nothing about its pages
    assert not is_faq_page("faq-bot-docs/project/docs/install.md")
    assert reports_problem("mmdet 训练 loss nan 了")
    assert reports_problem("RuntimeError: CUDA out of memory when I train")
    assert reports_problem("why is the bot silent")
    assert reports_problem("lmdeploy 跑不起来")
    assert not reports_problem("how do I connect the bot to a dingtalk group?")
    assert not reports_problem("怎么把机器人接入飞书群")


def test_translated_pages_teach_the_dictionary(make_kb: KB, twins: Path) -> None:
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    documents = kb.document_index
    assert documents is not None
    pairs = {(documents.sources[en], documents.sources[zh]) for en, zh in documents.twin_pairs}
    assert pairs == {
        ("twins/README.md", "twins/README_zh-CN.md"),
        ("twins/docs/en/quantization.md", "twins/docs/zh_cn/quantization.md"),
    }
    dictionary = documents.dictionary
    assert dictionary.zh2en["安装"][0] == "instal"
    assert dictionary.zh2en["评测"][0] == "evalu"
    assert dictionary.en2zh["quantiz"][0] == "量化"
    assert dictionary.translate(kb.tokenizer("怎么安装")) == ["instal"]
    assert "int8" not in dictionary.en2zh  # the Chinese pages write int8 as it is


def test_sections_teach_the_words_of_their_bodies() -> None:
    """Headings rarely hold the everyday words (打印, 显存) that questions use; the sections
    under them do. Words both versions write alike are not translated."""
    tokenize = Tokenizer()
    outline_en = [(1, "Training"), (2, "Logs"), (2, "Memory"), (2, "Speed")]
    outline_zh = [(1, "训练"), (2, "日志"), (2, "内存"), (2, "速度")]
    english = Page(
        outline_en,
        [
            ("Training > Logs", tokenize("Logs\nThe hook will print the loss with int8 models.")),
            ("Training > Memory", tokenize("Memory\nPrint the GPU memory, then lower the batch.")),
            ("Training > Speed", tokenize("Speed\nUse int8 to train faster.")),
        ],
    )
    chinese = Page(
        outline_zh,
        [
            ("训练 > 日志", tokenize("日志\n这个钩子会打印 int8 模型的损失。")),
            ("训练 > 内存", tokenize("内存\n先打印 GPU 显存，再调小批次。")),
            ("训练 > 速度", tokenize("速度\n用 int8 训练更快。")),
        ],
    )
    dictionary = BilingualDictionary.mine(aligned_sections([(english, chinese)], tokenize))
    assert dictionary.zh2en["打印"][0] == "print"  # never in a heading
    assert dictionary.en2zh["print"][0] == "打印"
    assert "int8" not in dictionary.en2zh and "gpu" not in dictionary.en2zh
    assert dictionary.translate(tokenize("怎么打印日志")) == ["print", "log"]
    # Outlines that differ pair nothing: their sections may not be translations.
    shorter = Page(outline_zh[:3], chinese.chunks)
    assert aligned_sections([(english, shorter)], tokenize) == []


def test_a_question_finds_the_page_written_only_in_the_other_language(
    make_kb: KB, twins: Path
) -> None:
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    hits = kb.search("how do I evaluate a model on the coco dataset", k=3)
    assert hits[0].source == "twins/docs/zh_cn/benchmark.md"
    assert hits[0].language == "zh" and not hits[0].translation_of
    assert hits[0].scores["ranker"] == hits[0].score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(
    ("question", "language", "page"),
    [
        ("how do I quantize a model to int8", "zh", "twins/docs/zh_cn/quantization.md"),
        ("how do I quantize a model to int8", "en", "twins/docs/en/quantization.md"),
        ("怎么把模型量化成 int8", "en", "twins/docs/en/quantization.md"),
        ("怎么把模型量化成 int8", "zh", "twins/docs/zh_cn/quantization.md"),
    ],
)
def test_the_answer_comes_in_the_asked_language_when_translated(
    make_kb: KB, twins: Path, question: str, language: str, page: str
) -> None:
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    hits = kb.search(question, k=2, language=language)
    assert hits[0].source == page and hits[0].language == language
    assert "int8" in hits[0].title
    if hits[0].translation_of:
        assert language_slot(hits[0].translation_of)[0] == language_slot(page)[0]
    # The page written only in Chinese has no translation: it stays what it is.
    coco = kb.search("evaluate on coco", k=1, language="en")[0]
    assert coco.source == "twins/docs/zh_cn/benchmark.md" and not coco.translation_of


def test_a_page_and_its_translation_take_one_place(make_kb: KB, twins: Path) -> None:
    """Without a language the better ranked of a translated pair stands for both: the other
    says the same, and its place goes to another page."""
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    pair = {"twins/docs/en/quantization.md", "twins/docs/zh_cn/quantization.md"}
    hits = kb.search("how do I quantize a model to int8", k=5)
    assert hits[0].source in pair
    assert len({h.source for h in hits} & pair) == 1
    assert not any(h.translation_of for h in hits)


def test_a_corpus_without_translations_ranks_without_a_dictionary(
    make_kb: KB, corpus: Path
) -> None:
    kb = make_kb(sources=[{"path": str(corpus)}])
    kb.build(progress=False)
    documents = kb.document_index
    assert documents is not None
    assert not documents.twin_pairs and len(documents.dictionary) == 0
    assert documents.repository_names == []  # one repository names nothing
    hits = kb.search("how do I install the package with pip", k=3, language="zh")
    assert hits[0].source == "corpus/en/install.md" and not hits[0].translation_of
    assert hits[0].language == "en"


def test_the_index_of_documents_follows_the_builds(make_kb: KB, twins: Path) -> None:
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    generation = kb.manifest.get_meta("generation")
    assert DocumentIndex.load(kb.ranking_dir, generation) is not None
    assert DocumentIndex.load(kb.ranking_dir, "another generation") is None

    (twins / "README_zh-CN.md").unlink()
    (twins / "docs" / "zh_cn" / "quantization.md").write_text(
        "# 模型量化\n\n只剩一个标题，大纲和英文版对不上了。\n", encoding="utf-8"
    )
    report = kb.build(progress=False)
    assert report.removed == 1 and report.changed == 1
    documents = kb.document_index
    assert documents is not None and documents.generation != generation
    # The outlines no longer match: nothing is aligned, no dictionary.
    assert len(documents.twin_pairs) == 1 and len(documents.dictionary) == 0
    assert "twins/README_zh-CN.md" not in documents.sources


def test_an_index_built_before_the_ranker_gets_its_facts_without_embedding(
    make_kb: KB, twins: Path
) -> None:
    kb = make_kb(sources=[{"path": str(twins)}])
    kb.build(progress=False)
    dictionary = kb.document_index.dictionary  # type: ignore[union-attr]
    # What an index of the previous version looks like: no facts, no document index.
    with sqlite3.connect(kb.manifest.path) as db:
        db.execute("DELETE FROM document_facts")
    (kb.ranking_dir / INDEX_FILE).unlink()

    report = kb.build(progress=False)
    assert report.chunks_embedded == 0 and report.unchanged == 5 and not report.changed
    assert len(kb.manifest.facts()) == 5
    assert (kb.ranking_dir / INDEX_FILE).exists()
    assert kb.document_index.dictionary == dictionary  # type: ignore[union-attr]


def test_exact_dense_search_finds_what_chroma_finds(make_kb: KB, corpus: Path) -> None:
    exact = make_kb(sources=[{"path": str(corpus)}])
    exact.build(progress=False)
    approximate = make_kb(sources=[{"path": str(corpus)}], search={"exact_max_chunks": 0})
    questions = ["how do I install with pip", "TensorRT 推理引擎", "哈哈哈"]
    for a, b in zip(exact.similarity(questions), approximate.similarity(questions), strict=True):
        assert a.best_chunk_id == b.best_chunk_id
        assert a.dense_max == pytest.approx(b.dense_max, abs=1e-4)
    assert [h.chunk_id for h in exact.search("resume training", k=3)] == [
        h.chunk_id for h in approximate.search("resume training", k=3)
    ]
