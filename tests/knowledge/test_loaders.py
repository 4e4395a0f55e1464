"""Loaders on small real files of each kind, and on broken ones: a clear reason, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.loaders import Loaded, SkipFile, kind_of, load, rst_to_markdown
from tests.knowledge.conftest import DATA

pytestmark = pytest.mark.unit

CORPUS = DATA / "corpus"
BROKEN = DATA / "broken"


def read(path: Path) -> Loaded:
    return load(path, path.read_bytes())


def test_markdown_keeps_text_and_takes_the_first_heading_as_title() -> None:
    loaded = read(CORPUS / "en" / "install.md")
    assert loaded.kind == "markdown"
    assert loaded.title == "Installation"
    assert "pip install mmfoo" in loaded.text


def test_chinese_markdown() -> None:
    loaded = read(CORPUS / "zh" / "部署.md")
    assert loaded.title == "模型部署"
    assert "TensorRT" in loaded.text


def test_rst_titles_become_markdown_headings_by_adornment_order() -> None:
    loaded = read(CORPUS / "en" / "evaluation.rst")
    assert loaded.kind == "rst"
    assert loaded.title == "Evaluation"
    lines = loaded.text.splitlines()
    assert "# Evaluation" in lines
    assert "## Computing the mAP" in lines
    assert "## Saving the predictions" in lines
    assert "=====" not in loaded.text


def test_rst_overlined_titles() -> None:
    text = "=====\nTitle\n=====\n\nIntro.\n\nPart\n----\n\nBody.\n"
    assert rst_to_markdown(text).split() == ["#", "Title", "Intro.", "##", "Part", "Body."]


def test_plain_text() -> None:
    loaded = read(CORPUS / "faq.txt")
    assert loaded.kind == "text"
    assert "CUDA out of memory" in loaded.text


def test_html_main_content_without_navigation() -> None:
    loaded = read(CORPUS / "en" / "changelog.html")
    assert loaded.kind == "html"
    assert loaded.title == "Changelog"
    assert "## Version 3.2.0" in loaded.text
    assert "rotated bounding boxes" in loaded.text
    assert "Home" not in loaded.text


def test_pdf_pages() -> None:
    loaded = read(CORPUS / "en" / "manual.pdf")
    assert loaded.kind == "pdf"
    assert [number for number, _ in loaded.pages] == [1, 2]
    assert "--resume" in loaded.pages[0][1]
    assert "mixed precision" in loaded.pages[1][1]


def test_source_code() -> None:
    loaded = read(CORPUS / "builder.py")
    assert loaded.kind == "code"
    assert loaded.title == ""  # a "# comment" is not a heading
    assert "def build_detector" in loaded.text


def test_gb18030_text_is_decoded() -> None:
    loaded = read(BROKEN / "gbk.md")
    assert loaded.title == "旧文档"
    assert "显卡驱动" in loaded.text


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("encrypted.pdf", "encrypted PDF"),
        ("truncated.pdf", "broken PDF"),
        ("binary.md", "binary file"),
        ("empty.txt", "no text"),
        ("logo.png", "unsupported file type"),
    ],
)
def test_broken_files_are_skipped_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(SkipFile, match=reason):
        read(BROKEN / name)


def test_garbage_with_a_pdf_name() -> None:
    with pytest.raises(SkipFile, match="broken PDF"):
        load(Path("x.pdf"), b"this is not a pdf at all")


def test_kinds_by_name() -> None:
    assert kind_of(Path("a/README.MD")) == "markdown"
    assert kind_of(Path("Makefile")) == "code"
    assert kind_of(Path("model.onnx")) is None
