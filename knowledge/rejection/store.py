"""The calibrated gate on disk, beside the index, and how a message is scored with it.

``<work_dir>/knowledge/gate/`` holds ``gate.joblib`` (the fitted classifier and the example
embeddings), ``gate.json`` (what it was fitted from and how well it did, readable by people) and
``pr_curve.png``. The JSON records the feature version, both embedders' names, the index's
fingerprint and the examples' fingerprint: if any differs from the running bot, the gate is stale
and is fitted again.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from knowledge.rejection.features import FEATURE_VERSION, FeatureSpace
from knowledge.rejection.files import GATE_FILE, META_FILE
from knowledge.rejection.model import FittedGate

log = logging.getLogger(__name__)


def sklearn_version() -> str:
    return importlib.metadata.version("scikit-learn")


# Example questions quoted in a trace are cut to this many characters.
QUOTE_CHARS = 200


@dataclass(frozen=True)
class Decision:
    """One message's verdict, with everything the trace needs to explain it."""

    accept: bool
    score: float
    threshold: float
    kind: str
    features: dict[str, float]
    # Each feature's push toward answering (+) or silence (-) in log-odds; None where the
    # model has no such decomposition (boosting, the single threshold).
    contributions: dict[str, float] | None = None
    # The nearest good and bad example questions: (text, cosine similarity).
    nearest_good: list[tuple[str, float]] = field(default_factory=list)
    nearest_bad: list[tuple[str, float]] = field(default_factory=list)

    def trace_detail(self) -> dict[str, Any]:
        """What the trace keeps of it (JSON-ready)."""

        def quoted(found: list[tuple[str, float]]) -> list[dict[str, Any]]:
            return [{"text": text[:QUOTE_CHARS], "similarity": sim} for text, sim in found]

        return {
            "gate": self.kind,
            "features": self.features,
            "contributions": self.contributions,
            "nearest_good": quoted(self.nearest_good),
            "nearest_bad": quoted(self.nearest_bad),
        }


@dataclass
class StoredGate:
    fitted: FittedGate
    meta: dict[str, Any]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # Write beside, then rename: a reader never sees half a file, and the daemon's job and a
        # `calibrate` run at the same time do not write into one temporary file.
        suffix = f".{os.getpid()}.{threading.get_ident()}.tmp"
        tmp = directory / (GATE_FILE + suffix)
        joblib.dump(self.fitted, tmp)
        tmp.replace(directory / GATE_FILE)
        tmp_meta = directory / (META_FILE + suffix)
        tmp_meta.write_text(json.dumps(self.meta, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp_meta.replace(directory / META_FILE)

    @classmethod
    def load(cls, directory: Path) -> StoredGate | None:
        """The stored gate, or None if there is none or it cannot be read (then re-fit)."""
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
            if meta.get("sklearn") != sklearn_version():
                log.warning("gate in %s was fitted with another scikit-learn: re-fit", directory)
                return None
            fitted = joblib.load(directory / GATE_FILE)
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("cannot read the gate in %s (%s): it will be fitted again", directory, exc)
            return None
        if not isinstance(fitted, FittedGate):
            return None
        return cls(fitted, meta)

    def stale_reason(self, expected: dict[str, Any]) -> str | None:
        """Why this gate no longer matches the running bot, or None if it still does."""
        for key in self.changed(expected):
            return f"{key} changed ({self.meta.get(key)!r} -> {expected[key]!r})"
        return None

    def changed(self, expected: dict[str, Any]) -> list[str]:
        """The facts in which this gate differs from the running bot."""
        return [key for key, value in expected.items() if self.meta.get(key) != value]

    @property
    def f1(self) -> float:
        """Its cross-validated F1 (0 when not recorded)."""
        return float((self.meta.get("cv") or {}).get("f1") or 0.0)

    def decide(
        self, space: FeatureSpace, queries: list[str], mentioned: list[bool] | None = None
    ) -> list[Decision]:
        """Score messages in one batch (one embedding call, one knowledge-base call)."""
        if not queries:
            return []
        embeddings = space.embed(queries)
        base = space.base(queries, mentioned, embeddings)
        fitted = self.fitted
        scores, rows = fitted.scores(base, embeddings, space.names)
        names = fitted.feature_names
        threshold = fitted.threshold
        contributions: list[dict[str, float] | None] = [None] * len(queries)
        contributions = [*(fitted.contributions(rows) or contributions)]
        good, bad = fitted.nearest(embeddings, 1), fitted.nearest(embeddings, 0)
        return [
            Decision(
                accept=bool(score >= threshold),
                score=float(score),
                threshold=threshold,
                kind=fitted.kind,
                features={n: round(float(v), 4) for n, v in zip(names, row, strict=True)},
                contributions=pushes,
                nearest_good=near_good,
                nearest_bad=near_bad,
            )
            for score, row, pushes, near_good, near_bad in zip(
                np.asarray(scores), rows, contributions, good, bad, strict=True
            )
        ]


def expected_meta(
    space: FeatureSpace, examples_fingerprint: str, kb_fingerprint: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """The facts a stored gate must share with the running bot to be used as is."""
    return {
        "feature_version": FEATURE_VERSION,
        "kb_embedder": space.kb.embedder.name,
        "example_embedder": space.embedder.name,
        "kb_fingerprint": kb_fingerprint,
        "examples": examples_fingerprint,
        "settings": settings,
    }
