"""The rejection gate as one long-lived object: the ``reject.embedding`` middleware asks it,
the daemon's learning job refits it, and a refit is in use from the next message on.

A refit never makes the gate worse: when only the examples or the indexed documents changed
(so the gate in use still fits the running bot), both are judged on the same, current
examples: the new fit by its cross-validated F1, the gate in use by its out-of-fold scores on
the examples it was fitted with and its plain scores on the new ones. The new fit replaces
the gate in use only if it does at least as well. (Comparing each one's cross-validated F1 on
its own examples would keep a gate that was perfect on easy examples from ever learning the
hard ones feedback brings.) Every refit, kept or not, is one line in ``history.jsonl`` beside
the gate, with the F1s.

Blocking throughout (embedding, fitting): async callers run it in a thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.rejection.calibrate import CalibrationReport, Calibrator, Candidate
from knowledge.rejection.examples import Examples
from knowledge.rejection.model import scores_at
from knowledge.rejection.store import Decision, StoredGate

log = logging.getLogger(__name__)

# A gate that differs from the running bot only in these is still usable, so a refit must beat
# it; any other difference (features, embedders, settings) means it must be replaced.
COMPARABLE = frozenset({"examples", "kb_fingerprint"})


@dataclass(frozen=True)
class Refit:
    """One re-calibration: why, the cross-validated F1 before and after, and whether the new
    gate is in use."""

    at: str
    reason: str
    # The gate in use: its cross-validated F1 on its own examples, and its F1 on the current
    # examples (None when it cannot be judged on them); the new fit's cross-validated F1.
    f1_before: float | None
    f1_in_use: float | None
    f1_after: float
    kept_new: bool
    good: int
    bad: int
    threshold: float
    # What it was fitted from (the examples' and the index's fingerprints).
    inputs: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RejectionGate:
    def __init__(self, calibrator: Calibrator) -> None:
        self.calibrator = calibrator
        self._stored: StoredGate | None = None
        # The examples of the last refit that lost to the gate in use: not tried again.
        self._declined: str | None = None
        history = calibrator.history()
        if history and not history[-1].get("kept_new", True):
            self._declined = history[-1].get("inputs")
        self._fit_lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.calibrator.directory

    @property
    def stored(self) -> StoredGate | None:
        """The gate in use (None before the first ``load``)."""
        return self._stored

    def load(self) -> StoredGate:
        """The stored gate, refitted first if it is missing or stale (a refit that would be
        worse is not used); then warm the example embedder, so the first message is not slow.
        Raises ExamplesError/ValueError when the examples or the knowledge base cannot give a
        gate."""
        with self._fit_lock:
            self._update(datetime.now(UTC), strict=True)
            stored = self._stored
        assert stored is not None
        self.calibrator.space.embed(["warm up"])
        return stored

    def decide(self, queries: list[str], mentioned: list[bool]) -> list[Decision]:
        """Score messages in one batch: one embedding call and one knowledge-base call."""
        gate = self._stored or self.load()
        return gate.decide(self.calibrator.space, queries, mentioned)

    def refresh(self, now: datetime | None = None) -> Refit | None:
        """Refit if the examples, the index or the settings changed; the refit, or None when
        nothing changed. Never raises: a failure is logged and the gate in use stays."""
        try:
            with self._fit_lock:
                return self._update(now or datetime.now(UTC), strict=False)
        except Exception:
            log.exception("re-calibrating the rejection gate in %s failed", self.directory)
            return None

    def _update(self, now: datetime, strict: bool) -> Refit | None:
        calibrator = self.calibrator
        stored = self._stored or calibrator.load()
        examples = calibrator.examples()
        expected = calibrator.expected(examples)
        changed = stored.changed(expected) if stored is not None else []
        if stored is not None and not changed:
            self._stored = stored
            return None
        inputs = f"{expected['examples']}/{expected['kb_fingerprint']}"
        comparable = stored is not None and set(changed) <= COMPARABLE
        if comparable and self._declined == inputs:
            self._stored = stored
            return None
        reason = calibrator.stale_reason(stored) if stored else "no calibrated gate yet"
        log.info("re-calibrating the rejection gate in %s: %s", self.directory, reason)
        try:
            candidate = calibrator.fit_candidate(examples)
        except Exception:
            if strict and not comparable:
                raise
            log.exception("the refit failed; the gate in use stays")
            self._stored = stored
            return None
        before = stored.f1 if stored is not None else None
        in_use = self.f1_on(stored, examples, candidate.gate) if comparable else None
        after = candidate.report.f1
        bar = in_use if in_use is not None else before
        kept_new = not comparable or bar is None or after >= bar
        refit = Refit(
            at=now.isoformat(timespec="seconds"),
            reason=reason or "",
            f1_before=None if before is None else round(before, 4),
            f1_in_use=None if in_use is None else round(in_use, 4),
            f1_after=round(after, 4),
            kept_new=kept_new,
            good=examples.good,
            bad=examples.bad,
            threshold=round(candidate.report.threshold, 4),
            inputs=inputs,
        )
        calibrator.record(refit.to_dict())
        if kept_new:
            calibrator.store(candidate)
            fresh = calibrator.load()
            if fresh is None:
                raise RuntimeError(f"the gate just written to {self.directory} cannot be read")
            self._stored, self._declined = fresh, None
            log.info("the re-calibrated gate is in use: F1 %s -> %.3f", before, after)
        else:
            self._stored, self._declined = stored, inputs
            log.warning(
                "the re-calibrated gate is worse (F1 %.3f < %.3f on the same examples): the "
                "gate in use stays",
                after,
                bar,
            )
        return refit

    def f1_on(
        self, stored: StoredGate | None, examples: Examples, candidate: StoredGate
    ) -> float | None:
        """The gate in use on the current examples: out-of-fold scores for those it was fitted
        with, its scores for the others, at its threshold, weighted like the new fit."""
        if stored is None:
            return None
        fitted = stored.fitted
        known = dict(zip(getattr(fitted, "example_queries", []), fitted.oof_scores, strict=False))
        if not known:
            return None  # fitted before the queries were kept: compare cross-validated F1s
        unseen = [q for q in examples.queries if q not in known]
        for query, decision in zip(
            unseen, stored.decide(self.calibrator.space, unseen), strict=True
        ):
            known[query] = decision.score
        scores = np.array([known[q] for q in examples.queries], dtype=float)
        weights = candidate.fitted.weights
        return scores_at(examples.labels, scores, weights, fitted.threshold).f1

    def fit(self) -> CalibrationReport:
        """Fit now (``calibrate``: the admin asked) and use the result."""
        with self._fit_lock:
            report = self.calibrator.fit()
            self._stored, self._declined = self.calibrator.load(), None
        return report

    def candidate(self, examples: Examples) -> Candidate:
        """Fit a gate from these examples without using it: the console shows its
        cross-validated figures beside the gate in use before the admin applies it."""
        return self.calibrator.fit_candidate(examples)

    def use(self, candidate: Candidate) -> CalibrationReport:
        """Store a candidate and use it from the next message on (the admin confirmed it, so
        it is not judged against the gate in use)."""
        with self._fit_lock:
            report = self.calibrator.store(candidate)
            self._stored, self._declined = self.calibrator.load(), None
        return report
