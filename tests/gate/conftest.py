"""A small knowledge base (three documents about a made-up toolbox) with good and bad example
questions, indexed once per test module with the real default embedder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Config, load_config

DATA = Path(__file__).parent / "data"


def write_gate_config(root: Path, **overrides: Any) -> Path:
    """A bot.yaml over a copy of the fixture corpus and examples, in ``root``."""
    if not (root / "corpus").exists():
        shutil.copytree(DATA / "corpus", root / "corpus")
        shutil.copy(DATA / "good.json", root / "good.json")
        shutil.copy(DATA / "bad.json", root / "bad.json")
    data: dict[str, Any] = {
        "bot": {"work_dir": "work"},
        "queue": {"debounce_seconds": 0},
        "pipeline": ["normalize", "reject.embedding", "generate"],
        "knowledge": {"sources": [{"path": "corpus"}]},
        "rejection": {"good_questions": "good.json", "bad_questions": "bad.json"},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / "bot.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def build_index(config: Config) -> None:
    from knowledge.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(config.knowledge, config.work_dir)
    try:
        kb.build(progress=False)
    finally:
        kb.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bot.yaml of a bot whose knowledge base is built (not yet calibrated)."""
    root = tmp_path_factory.mktemp("gate")
    path = write_gate_config(root)
    build_index(load_config(path))
    return path
