"""The rejection gate as one long-lived object: the ``reject.embedding`` middleware asks it,
the daemon's re-calibration job refits it, and a refit is in use from the next message on.

Blocking throughout (embedding, fitting): async callers run it in a thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.calibrate import CalibrationReport, Calibrator
from knowledge.rejection.store import Decision, StoredGate
from knowledge.settings import RejectionSettings

log = logging.getLogger(__name__)


class RejectionGate:
    def __init__(self, kb: KnowledgeBase, settings: RejectionSettings, work_dir: Path) -> None:
        self.calibrator = Calibrator(kb, settings, work_dir)
        self._stored: StoredGate | None = None
        self._fit_lock = threading.Lock()

    @property
    def stored(self) -> StoredGate | None:
        """The gate in use (None before the first ``load``)."""
        return self._stored

    def load(self) -> StoredGate:
        """The stored gate if it is current, else a freshly fitted one; then warm the example
        embedder, so the first message is not slow. Raises ExamplesError/ValueError when the
        examples or the knowledge base cannot give a gate."""
        with self._fit_lock:
            self._stored = self.calibrator.current()
        self.calibrator.space.embed(["warm up"])
        return self._stored

    def decide(self, queries: list[str], mentioned: list[bool]) -> list[Decision]:
        """Score messages in one batch: one embedding call and one knowledge-base call."""
        gate = self._stored or self.load()
        return gate.decide(self.calibrator.space, queries, mentioned)

    def refresh(self) -> bool:
        """Refit if the examples, the index or the settings changed; True when it did. Never
        raises: a failure is logged and the gate in use stays."""
        try:
            with self._fit_lock:
                reason = self.calibrator.stale_reason(self._stored or self.calibrator.load())
                if reason is None:
                    return False
                log.info("re-calibrating the rejection gate: %s", reason)
                self.calibrator.fit()
                fresh = self.calibrator.load()
                if fresh is None:
                    raise RuntimeError("the refitted gate cannot be read back")
                self._stored = fresh
            log.info("the re-calibrated rejection gate is in use (%s)", fresh.meta.get("created"))
            return True
        except Exception:
            log.exception("re-calibrating the rejection gate failed; the gate in use stays")
            return False

    def fit(self) -> CalibrationReport:
        """Fit now (``calibrate``) and use the result."""
        with self._fit_lock:
            report = self.calibrator.fit()
            self._stored = self.calibrator.load()
        return report
