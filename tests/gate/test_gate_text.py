"""Feature extraction from Chinese and English messages, and reading the example files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.rejection.examples import Examples, ExamplesError, read_questions
from knowledge.rejection.message_features import TEXT_FEATURES, text_features

pytestmark = pytest.mark.unit


def test_chinese_question_with_identifiers() -> None:
    f = text_features("大佬们，请问如何安装mmcv？pip install mmcv-full 报错了")
    assert f["zh"] == 1.0
    assert f["question_mark"] == 1.0
    assert f["ask_words"] >= 1  # 如何
    assert f["help_words"] >= 2  # 请问, 报错, 大佬
    assert f["code_marks"] >= 1  # pip install
    assert f["tech_tokens"] >= 1  # mmcv-full
    assert f["mentioned"] == 0.0


def test_chinese_chitchat_with_stickers_and_laughter() -> None:
    f = text_features("哈哈哈 [旺柴][发呆] 今天吃啥")
    assert f["zh"] == 1.0
    assert f["stickers"] == 2.0
    assert f["laughter"] == 1.0
    assert f["code_marks"] == 0.0
    assert f["question_mark"] == 0.0


def test_english_traceback_question() -> None:
    text = (
        "Why does mmdet fail? Traceback (most recent call last):\n"
        '  File "tools/train.py", line 12\nModuleNotFoundError: No module named mmcv._ext'
    )
    f = text_features(text, mentioned=True)
    assert f["zh"] == 0.0
    assert f["ask_words"] >= 1  # why, does
    assert f["help_words"] >= 1  # fail
    assert f["code_marks"] >= 3  # Traceback, File ", train.py, line 12 ...
    assert f["sentences"] >= 2
    assert f["mentioned"] == 1.0
    assert f["latin_share"] == 1.0


def test_every_feature_is_always_present_and_finite() -> None:
    for text in ("", "?", "ok", "好", "x" * 5000):
        f = text_features(text)
        assert list(f) == list(TEXT_FEATURES)
        assert all(value == value and abs(value) < 1e6 for value in f.values())


def test_example_files_in_all_three_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(["如何安装 mmcv?", " ", "what is mmdet"]))
    (tmp_path / "b.jsonl").write_text('{"query": "哈哈"}\n\n{"query": "lunch?"}\n"ok"\n')
    (tmp_path / "c.txt").write_text("first\n\nsecond\n")
    assert read_questions(tmp_path / "a.json") == ["如何安装 mmcv?", "what is mmdet"]
    assert read_questions(tmp_path / "b.jsonl") == ["哈哈", "lunch?", "ok"]
    assert read_questions(tmp_path / "c.txt") == ["first", "second"]
    examples = Examples.load(tmp_path / "a.json", tmp_path / "b.jsonl")
    assert (examples.good, examples.bad) == (2, 3)
    assert examples.fingerprint() != Examples.from_lists(["x"], ["y"]).fingerprint()


def test_broken_example_files_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"query": "ok"}\n{"query": 3}\n')
    with pytest.raises(ExamplesError, match=r"bad\.jsonl: line 2"):
        read_questions(tmp_path / "bad.jsonl")
    (tmp_path / "broken.json").write_text('["a",\n "b"')
    with pytest.raises(ExamplesError, match=r"broken\.json: line 2: invalid JSON"):
        read_questions(tmp_path / "broken.json")
    with pytest.raises(ExamplesError, match="not found"):
        read_questions(tmp_path / "missing.json")
