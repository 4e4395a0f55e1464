"""The example files are written back in the admin's own format, losing nothing they carried."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.rejection.examples import (
    ExampleFiles,
    Examples,
    ExamplesError,
    read_questions,
    write_questions,
)

pytestmark = pytest.mark.unit


def test_a_json_list_keeps_its_objects_and_their_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(
        json.dumps(["How do I install?", {"query": "导出 ONNX 报错", "source": "group 7"}]),
        encoding="utf-8",
    )
    write_questions(path, ["导出 ONNX 报错", "How do I resume training?"])
    assert json.loads(path.read_text(encoding="utf-8")) == [
        {"query": "导出 ONNX 报错", "source": "group 7"},
        "How do I resume training?",
    ]
    assert "导出" in path.read_text(encoding="utf-8")  # readable, not \\u escapes


def test_json_lines_and_plain_text_stay_what_they_were(tmp_path: Path) -> None:
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"query": "早上好"}\n{"query": "lol", "id": 3}\n', encoding="utf-8")
    write_questions(lines, ["lol", "晚安"])
    assert lines.read_text(encoding="utf-8") == '{"query": "lol", "id": 3}\n{"query": "晚安"}\n'
    text = tmp_path / "bad.txt"
    text.write_text("早上好\n\nlol\n", encoding="utf-8")
    write_questions(text, ["lol", "晚安"])
    assert read_questions(text) == ["lol", "晚安"]
    with pytest.raises(ExamplesError, match="one question a line"):
        write_questions(text, ["Traceback:\n  File x"])
    assert read_questions(text) == ["lol", "晚安"]  # a refused write changes nothing


def test_a_new_file_takes_its_format_from_its_suffix(tmp_path: Path) -> None:
    write_questions(tmp_path / "new.json", ["a?"])
    write_questions(tmp_path / "new.jsonl", ["a?"])
    write_questions(tmp_path / "new.txt", ["a?"])
    assert json.loads((tmp_path / "new.json").read_text()) == ["a?"]
    assert (tmp_path / "new.jsonl").read_text() == '{"query": "a?"}\n'
    assert (tmp_path / "new.txt").read_text() == "a?\n"


def test_examples_round_trip_through_the_files(tmp_path: Path) -> None:
    files = ExampleFiles(tmp_path / "good.json", tmp_path / "bad.txt")
    files.save(Examples.from_lists(["How do I install?"], ["早上好", "lol"]))
    before = files.load()
    assert before.questions(1) == ["How do I install?"]
    assert before.questions(0) == ["早上好", "lol"]
    changed = Examples.from_lists(["How do I install?", "早上好"], ["lol"])
    files.save(changed)
    assert files.load().fingerprint() == changed.fingerprint() != before.fingerprint()
