"""Fixtures for the knowledge base tests: the fixture corpus copied to a temporary folder, and
knowledge bases over it that share one loaded USE model (the real default embedder)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.embedders import Embedder, UseEmbedder
from knowledge.knowledge_base import KnowledgeBase
from knowledge.settings import EmbedderSettings, KnowledgeSettings

DATA = Path(__file__).parent.parent / "data" / "knowledge"


@pytest.fixture(scope="session")
def use_embedder() -> Embedder:
    embedder = UseEmbedder(EmbedderSettings())
    embedder.warm_up()
    return embedder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of tests/data/knowledge/corpus (tests add, change and delete files)."""
    target = tmp_path / "corpus"
    shutil.copytree(DATA / "corpus", target)
    return target


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(DATA / "broken", target)
    return target


@pytest.fixture
def make_kb(tmp_path: Path, use_embedder: Embedder) -> Iterator[Callable[..., KnowledgeBase]]:
    """A knowledge base in a private work dir; keyword arguments are `knowledge:` settings."""
    opened: list[KnowledgeBase] = []

    def make(**settings: Any) -> KnowledgeBase:
        kb = KnowledgeBase(
            KnowledgeSettings.model_validate(settings), tmp_path / "work", embedder=use_embedder
        )
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        kb.close()
