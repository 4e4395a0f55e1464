"""Fit the gate from the admin's examples, store it beside the index, report how well it does.

Used by ``huixiangdou-bot calibrate``, by the ``reject.embedding`` middleware when the stored
gate is missing or stale, and by the daemon's periodic check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.curve import draw_pr_curve
from knowledge.rejection.examples import Examples
from knowledge.rejection.features import (
    FeatureSpace,
    QueryEmbedder,
    TitleIndex,
    e5_query_embedder,
    kb_headings,
)
from knowledge.rejection.files import CURVE_FILE, HISTORY_FILE, TITLES_FILE, gate_dir
from knowledge.rejection.model import fit_gate
from knowledge.rejection.store import StoredGate, expected_meta, sklearn_version
from knowledge.settings import RejectionSettings

log = logging.getLogger(__name__)


def make_embedder(settings: RejectionSettings, kb: KnowledgeBase) -> QueryEmbedder:
    if settings.example_embedder == "knowledge":
        return QueryEmbedder(kb.embedder, f"knowledge:{kb.embedder.name}")
    return e5_query_embedder()


def kb_fingerprint(kb: KnowledgeBase) -> str:
    """Changes when an indexed document changes, so a re-index with new content re-fits."""
    return kb.status().fingerprint


def fit_settings(settings: RejectionSettings) -> dict[str, Any]:
    """The settings that change the fitted gate (a change makes the stored gate stale)."""
    return {
        "model": settings.model,
        "chitchat_share": settings.chitchat_share,
        "min_examples": settings.min_examples,
        "neighbours": settings.neighbours,
        "mention_boost": settings.mention_boost,
        "folds": settings.folds,
        "collection": settings.collection,
    }


@dataclass(frozen=True)
class CalibrationReport:
    kind: str
    good: int
    bad: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    threshold: float
    chitchat_share: float | None
    seconds: float
    directory: Path
    curve: Path | None

    def lines(self) -> list[str]:
        how = (
            "learned gate (calibrated classifier over knowledge-base, heading, example and text "
            "features)"
            if self.kind == "learned"
            else "single threshold on knowledge-base similarity (too few examples for a "
            "learned gate)"
        )
        share = (
            f"corrected for {self.chitchat_share:.0%} chitchat"
            if self.chitchat_share is not None
            else "examples' own mix taken as the real one"
        )
        return [
            f"examples:   {self.good} good, {self.bad} bad ({share})",
            f"gate:       {how}",
            f"threshold:  {self.threshold:.4f}",
            f"cross-validated: precision {self.precision:.3f}  recall {self.recall:.3f}  "
            f"F1 {self.f1:.3f}  accuracy {self.accuracy:.3f}",
            f"stored in:  {self.directory}",
            *([f"PR curve:   {self.curve}"] if self.curve else []),
            f"took {self.seconds:.1f} s",
        ]


@dataclass(frozen=True)
class Candidate:
    """A freshly fitted gate, not stored yet, and its report."""

    gate: StoredGate
    report: CalibrationReport


class Calibrator:
    """Everything needed to fit, load and check one gate over one knowledge base: by default
    the global one, from the example files in ``rejection:``, in ``<work_dir>/knowledge/gate``;
    a group's own gate passes its ``directory`` and its ``examples``."""

    def __init__(
        self,
        kb: KnowledgeBase,
        settings: RejectionSettings,
        work_dir: Path,
        embedder: QueryEmbedder | None = None,
        *,
        directory: Path | None = None,
        examples: Callable[[], Examples] | None = None,
    ) -> None:
        self.kb = kb
        self.settings = settings
        self.directory = directory or gate_dir(work_dir)
        self._examples = examples
        self.space = FeatureSpace(
            kb, embedder or make_embedder(settings, kb), collection=settings.collection
        )

    def examples(self) -> Examples:
        if self._examples is not None:
            return self._examples()
        return Examples.load(self.settings.good_questions, self.settings.bad_questions)

    def expected(self, examples: Examples) -> dict[str, Any]:
        return expected_meta(
            self.space,
            examples.fingerprint(),
            kb_fingerprint(self.kb),
            fit_settings(self.settings),
        )

    def prepare_titles(self) -> None:
        """Embed the knowledge base's headings (only new ones; the rest come from the cache)."""
        headings = kb_headings(self.kb, self.settings.collection)
        self.space.titles = TitleIndex.build(
            headings, self.space.embedder, self.directory / TITLES_FILE
        )

    def load(self) -> StoredGate | None:
        """The stored gate, with the headings it was fitted with."""
        gate = StoredGate.load(self.directory)
        if gate is None:
            return None
        titles = TitleIndex.load(self.directory / TITLES_FILE, self.space.embedder.name)
        if titles is None:
            self.prepare_titles()
        else:
            self.space.titles = titles
        return gate

    def stale_reason(self, gate: StoredGate | None) -> str | None:
        """Why the stored gate must be fitted again, or None when it is current."""
        if gate is None:
            return "no calibrated gate yet"
        return gate.stale_reason(self.expected(self.examples()))

    def fit(self, examples: Examples | None = None, draw: bool = True) -> CalibrationReport:
        """Fit and store the gate (and draw its PR curve)."""
        candidate = self.fit_candidate(examples)
        return self.store(candidate, draw=draw)

    def store(self, candidate: Candidate, draw: bool = True) -> CalibrationReport:
        candidate.gate.save(self.directory)
        curve = draw_pr_curve(candidate.gate.fitted, self.directory / CURVE_FILE) if draw else None
        report = candidate.report
        if curve is not None:
            report = replace(report, curve=curve)
        log.info("gate calibrated: %s", "; ".join(report.lines()))
        return report

    def fit_candidate(self, examples: Examples | None = None) -> Candidate:
        """Fit a gate from the examples, without storing it (``store`` does)."""
        started = time.perf_counter()
        examples = examples or self.examples()
        if self.kb.status().chunks == 0:
            raise ValueError(
                "the knowledge base is empty: build it first (huixiangdou-bot kb build), the "
                "gate measures how close messages are to it"
            )
        settings = self.settings
        self.prepare_titles()
        embeddings = self.space.embed(examples.queries)
        base = self.space.base(examples.queries, None, embeddings)
        fitted = fit_gate(
            base,
            embeddings,
            examples.labels,
            self.space.names,
            kind=settings.model,
            neighbours=settings.neighbours,
            folds=settings.folds,
            min_examples=settings.min_examples,
            chitchat_share=settings.chitchat_share,
            mention_boost=settings.mention_boost,
        )
        fitted.example_queries = list(examples.queries)
        cv = fitted.cv
        assert cv is not None
        meta = {
            **self.expected(examples),
            "sklearn": sklearn_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "kind": fitted.kind,
            "threshold": fitted.threshold,
            "good": examples.good,
            "bad": examples.bad,
            "cv": {
                "precision": cv.precision,
                "recall": cv.recall,
                "f1": cv.f1,
                "accuracy": cv.accuracy,
            },
            "feature_names": fitted.feature_names,
        }
        report = CalibrationReport(
            kind=fitted.kind,
            good=examples.good,
            bad=examples.bad,
            precision=cv.precision,
            recall=cv.recall,
            f1=cv.f1,
            accuracy=cv.accuracy,
            threshold=fitted.threshold,
            chitchat_share=settings.chitchat_share,
            seconds=time.perf_counter() - started,
            directory=self.directory,
            curve=None,
        )
        return Candidate(StoredGate(fitted, meta), report)

    def record(self, entry: dict[str, Any]) -> None:
        """Append a re-calibration's outcome to ``history.jsonl`` beside the gate."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / HISTORY_FILE).open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def history(self) -> list[dict[str, Any]]:
        """The re-calibrations so far, oldest first."""
        try:
            lines = (self.directory / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping a broken line", self.directory / HISTORY_FILE)
        return entries
