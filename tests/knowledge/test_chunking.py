"""Chunking keeps the structure readers cite, and sizes chunks for the embedder."""

from __future__ import annotations

import itertools

import pytest

from knowledge.chunking import chunk_document, estimate_tokens, split_sentences
from knowledge.loaders import Loaded

pytestmark = pytest.mark.unit


def md(text: str) -> Loaded:
    return Loaded("markdown", text)


def test_heading_path_is_the_title() -> None:
    text = "# Guide\n\n" + "Intro paragraph. " * 30 + "\n\n## Install\n\n" + "Step one. " * 40
    chunks = chunk_document(md(text), max_tokens=128, overlap_tokens=0)
    assert chunks[0].title == "Guide"
    assert chunks[-1].title == "Guide > Install"
    assert all(estimate_tokens(c.text) <= 140 for c in chunks)


def test_small_sections_share_a_chunk_and_keep_their_headings() -> None:
    text = "# Guide\n\n## A\n\nshort a.\n\n## B\n\nshort b.\n"
    chunks = chunk_document(md(text), max_tokens=128, overlap_tokens=0)
    assert len(chunks) == 1
    assert chunks[0].title == "Guide"
    assert "## B" in chunks[0].text and "short a." in chunks[0].text


def test_a_code_block_stays_whole_where_it_fits() -> None:
    code = "```python\n" + "\n\n".join(f"x{i} = {i}" for i in range(20)) + "\n```"
    text = "# Code\n\n" + "Some words here. " * 20 + "\n\n" + code + "\n\nAfter."
    chunks = chunk_document(md(text), max_tokens=160, overlap_tokens=0)
    holding = [c for c in chunks if "x0 = 0" in c.text]
    assert len(holding) == 1
    assert "x19 = 19" in holding[0].text  # the blank lines inside the fence did not split it


def test_a_code_block_too_long_is_split_into_valid_fenced_pieces() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(200)) + "\n```"
    chunks = chunk_document(md("# Code\n\n" + code), max_tokens=100, overlap_tokens=0)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.startswith("```python") and chunk.text.endswith("```")
        assert estimate_tokens(chunk.text) <= 110


def test_chinese_sentences_split_at_chinese_punctuation() -> None:
    text = "第一句话。第二句话！第三句话？“引用的话。”最后一句"
    assert split_sentences(text) == [
        "第一句话。",
        "第二句话！",
        "第三句话？",
        "“引用的话。”",
        "最后一句",
    ]


def test_list_markers_and_inline_code_are_not_sentence_ends() -> None:
    text = "Run it: the log says `bot: connected`. Then\n5. **Publish** the app."
    assert split_sentences(text) == [
        "Run it:",
        " the log says `bot: connected`.",
        " Then\n",
        "5. **Publish** the app.",
    ]


def test_a_paragraph_cut_between_chunks_reads_as_one_paragraph() -> None:
    """The overlap and the rest of a long paragraph are joined as lines of one paragraph: a
    blank line would make two paragraphs of it, one of them starting mid-sentence."""
    sentences = [f"Sentence number {i} of the long paragraph ends here." for i in range(60)]
    text = "# Long\n\n" + " ".join(sentences) + "\n\nA second paragraph."
    chunks = chunk_document(md(text), max_tokens=64, overlap_tokens=16)
    assert len(chunks) > 5
    overlapping = 0
    for before, chunk in itertools.pairwise(chunks):
        paragraph = chunk.text.removesuffix("\n\nA second paragraph.")
        assert "\n\n" not in paragraph
        overlapping += paragraph.split("\n")[0] in before.text
    assert overlapping >= 3  # chunks that start with the end of the one before


def test_long_chinese_text_is_split_at_sentence_ends_with_overlap() -> None:
    sentence = "模型部署需要先把权重转换为推理引擎格式。"
    chunks = chunk_document(md("# 部署\n\n" + sentence * 40), max_tokens=64, overlap_tokens=24)
    assert len(chunks) > 4
    for chunk in chunks:
        assert chunk.text.endswith("。")
        assert chunk.title == "部署"
        assert estimate_tokens(chunk.text) <= 64
    # each chunk after the first starts with the last sentence of the one before
    assert chunks[1].text.startswith(sentence)


def test_headings_inside_code_fences_are_not_headings() -> None:
    text = "# Real\n\n```shell\n# install the package\npip install x\n```\n"
    chunks = chunk_document(md(text), max_tokens=128, overlap_tokens=0)
    assert [c.title for c in chunks] == ["Real"]


def test_plain_text_has_no_headings() -> None:
    chunks = chunk_document(Loaded("text", "# not a heading\n\nbody"), 128, 0)
    assert chunks[0].title == "" and "# not a heading" in chunks[0].text


def test_pdf_chunks_cite_their_page() -> None:
    loaded = Loaded("pdf", "", pages=((1, "Page one text."), (2, "Page two text.")))
    assert [c.title for c in chunk_document(loaded, 128, 16)] == ["p. 1", "p. 2"]


def test_code_is_split_at_definitions() -> None:
    lines = []
    for i in range(3):
        lines += [
            f"def function_{i}(x):",
            *[f"    y = x + {j}" for j in range(10)],
            "    return y",
        ]
    source = "\n".join(lines)
    chunks = chunk_document(Loaded("code", source), max_tokens=128, overlap_tokens=16)
    assert [c.title for c in chunks] == [f"def function_{i}(x)" for i in range(3)]
