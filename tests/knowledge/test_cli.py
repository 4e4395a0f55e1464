"""`huixiangdou-bot kb build | status | search` as an admin runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.app.cli import main

pytestmark = pytest.mark.integration


def write_config(folder: Path, knowledge: dict[str, object]) -> Path:
    path = folder / "bot.yaml"
    path.write_text(
        yaml.safe_dump({"bot": {"work_dir": "work"}, "knowledge": knowledge}, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def kb(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["kb", *args])
    return result.exit_code, result.output


def test_build_status_search(tmp_path: Path, corpus: Path) -> None:
    # relative to bot.yaml, wherever the command runs from
    config = str(write_config(tmp_path, {"sources": [{"path": "corpus"}]}))

    code, out = kb("build", "--config", config, "--progress")
    assert code == 0, out
    assert "9 documents, " in out and "chunks in the index" in out
    assert "added 9, changed 0, removed 0, unchanged 0 documents" in out
    assert "chunk/s" in out and "embedding" in out  # the progress bar

    code, out = kb("build", "--config", config)
    assert code == 0 and "unchanged 9 documents; embedded 0 chunks" in out
    assert "chunk/s" not in out  # not a terminal: no bar

    code, out = kb("status", "--config", config)
    assert code == 0
    assert "documents:  9" in out
    assert "embedder:   use-multilingual-v3 (512 dimensions)" in out
    assert f"chroma persistent {tmp_path / 'work' / 'knowledge' / 'chroma'}" in out
    status = json.loads(kb("status", "--config", config, "--json")[1])
    assert status["documents"] == 9 and status["chunks"] == status["vectors"]
    assert status["last_build"] and status["sizes"]["chroma"] > 0

    code, out = kb("search", "如何把模型部署到 TensorRT？", "-k", "2", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("1. corpus/zh/部署.md § 模型部署")
    assert "score " in lines[1] and "dense 0." in lines[1] and "bm25 " in lines[1]
    assert lines[2].startswith("   weighed most: ")
    assert lines[4].startswith("2. ")

    hits = json.loads(kb("search", "pip install", "--json", "--config", config)[1])
    assert hits[0]["source"] == "corpus/en/install.md"
    assert set(hits[0]["scores"]) == {"dense", "bm25", "weighted", "ranker"}
    assert len(hits[0]["features"]) == 3


def test_config_problems_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = str(write_config(tmp_path, {"sources": [{"path": "no-such-folder"}]}))
    code, out = kb("build", "--config", missing)
    assert code == 2
    assert out.strip().count("\n") == 0
    assert "knowledge.sources[0].path:" in out and "no-such-folder does not exist" in out

    (tmp_path / "empty").mkdir()
    none = str(write_config(tmp_path / "empty", {}))
    code, out = kb("build", "--config", none)
    assert code == 2 and "knowledge.sources: no folders to index" in out

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "corpus").mkdir()
    (tmp_path / "model" / "corpus" / "a.md").write_text("# A\n\ntext\n", encoding="utf-8")
    no_model = str(
        write_config(
            tmp_path / "model",
            {
                "sources": [{"path": "corpus"}],
                "embedder": {"kind": "gguf", "model_path": "models/missing.gguf"},
            },
        )
    )
    code, out = kb("build", "--config", no_model)
    assert code == 2 and "knowledge.embedder.model_path:" in out
    assert "missing.gguf does not exist" in out and out.strip().count("\n") == 0

    (tmp_path / "typo").mkdir()
    typo = str(write_config(tmp_path / "typo", {"sourcez": []}))
    code, out = kb("status", "--config", typo)
    assert code == 2 and "knowledge.sourcez: unknown key" in out


def test_search_before_any_build(tmp_path: Path, corpus: Path) -> None:
    config = str(write_config(tmp_path, {"sources": [{"path": "corpus"}]}))
    code, out = kb("search", "anything", "--config", config)
    assert code == 0 and "no passages (is the index built? huixiangdou-bot kb build)" in out
