"""Every rejection gate the bot uses, by group: one shared registry, built once by the
composition root, asked by the ``reject.embedding`` middleware and refreshed by the daemon's
learning job.

A group whose own learned examples (admins' ``/hxd good``/``bad`` and confirmed feedback) are
enough for a learned gate (``rejection.group_min_examples``, with ``rejection.folds`` of each
kind) gets a gate of its own, fitted from those examples over its own knowledge collection
(``groups.<id>.knowledge_collection``) in ``<gate dir>/groups/<group>/``. Every other group
uses the global gate, fitted from the example files and the learned examples of the groups
without a gate of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from knowledge.knowledge_base import KnowledgeBase
from knowledge.rejection.calibrate import Calibrator, make_embedder
from knowledge.rejection.examples import Examples
from knowledge.rejection.files import GROUPS_DIR, gate_dir
from knowledge.rejection.gate import Refit, RejectionGate
from knowledge.rejection.learned import Learned, read_learned, slug
from knowledge.settings import RejectionSettings

log = logging.getLogger(__name__)


class RejectionGates:
    def __init__(
        self,
        kb: KnowledgeBase,
        settings: RejectionSettings,
        work_dir: Path,
        collections: Mapping[str, str | None] | None = None,
    ) -> None:
        self.kb = kb
        self.settings = settings
        self.work_dir = Path(work_dir)
        # The groups' own knowledge collections (None: the rejection collection).
        self.collections = dict(collections or {})
        self.embedder = make_embedder(settings, kb)
        self._learned: dict[str, Learned] = read_learned(self.work_dir)
        self.global_gate = RejectionGate(
            Calibrator(kb, settings, self.work_dir, self.embedder, examples=self.global_examples)
        )
        # Groups with enough examples; a gate is used once it has been fitted.
        self._groups: dict[str, RejectionGate] = {}
        self.sync()

    # -- which gate ---------------------------------------------------------------------------

    def for_group(self, conversation_id: str) -> RejectionGate:
        """The group's own gate if it has one in use, else the global one."""
        gate = self._groups.get(conversation_id)
        return gate if gate is not None and gate.stored is not None else self.global_gate

    def own_gates(self) -> dict[str, RejectionGate]:
        """The groups that have a gate of their own in use."""
        return {cid: g for cid, g in self._groups.items() if g.stored is not None}

    def qualifies(self, learned: Learned | None) -> bool:
        folds = self.settings.folds
        return (
            learned is not None
            and len(learned) >= self.settings.group_min_examples
            and min(len(learned.good), len(learned.bad)) >= folds
        )

    def global_examples(
        self, learned: Mapping[str, Learned] | None = None, files: Examples | None = None
    ) -> Examples:
        """The global gate's examples: the example files (or ``files``), then the learned
        examples (those last read, or ``learned``) of the groups without a gate of their own,
        in one fixed order (the order is part of the examples' fingerprint)."""
        if files is None:
            files = Examples.load(self.settings.good_questions, self.settings.bad_questions)
        learned = self._learned if learned is None else learned
        own = self.own_gates()
        parts = [learned[cid].examples for cid in sorted(learned, key=slug) if cid not in own]
        return Examples.combine(files, *parts)

    def examples_with(
        self, conversation_id: str, learned: Mapping[str, Learned]
    ) -> tuple[RejectionGate, Examples]:
        """The gate a group uses, and the examples it would be fitted from were the learned
        examples these (the console shows a lesson's effect before it is stored)."""
        gate = self.for_group(conversation_id)
        if gate is self.global_gate:
            return gate, self.global_examples(learned)
        return gate, learned[conversation_id].examples

    def sync(self) -> None:
        """Read the learned examples again; give the groups that now have enough a gate of
        their own, and take it from those that no longer do (refresh does this first; the
        console, after it stored an admin's lesson)."""
        self._learned = read_learned(self.work_dir)
        groups = {
            cid: gate
            for cid, gate in self._groups.items()
            if self.qualifies(self._learned.get(cid))
        }
        for cid, learned in self._learned.items():
            if cid not in groups and self.qualifies(learned):
                groups[cid] = self._group_gate(cid)
                log.info(
                    "group %s has %d examples of its own: it gets its own gate", cid, len(learned)
                )
        self._groups = groups

    def _group_gate(self, conversation_id: str) -> RejectionGate:
        settings = self.settings.model_copy(
            update={
                "collection": self.collections.get(conversation_id) or self.settings.collection
            }
        )
        calibrator = Calibrator(
            self.kb,
            settings,
            self.work_dir,
            self.embedder,
            directory=gate_dir(self.work_dir) / GROUPS_DIR / slug(conversation_id),
            examples=lambda: self._learned[conversation_id].examples,
        )
        return RejectionGate(calibrator)

    # -- loading and refitting ------------------------------------------------------------------

    def load(self) -> None:
        """At start-up: the groups' gates (a failing one is left out), then the global one
        (errors raised: a broken example file is the admin's to fix)."""
        self.sync()
        for cid, gate in self._groups.items():
            try:
                gate.load()
            except Exception:
                log.exception(
                    "group %s: its own gate cannot be fitted: the global one is used", cid
                )
        self.global_gate.load()

    def refresh(self, now: datetime | None = None) -> dict[str, Refit]:
        """Refit every gate whose examples, index or settings changed (groups' first: a group
        that gets a gate takes its examples out of the global one). The refits, by group id
        ("" for the global gate)."""
        self.sync()
        refits: dict[str, Refit] = {}
        for cid, gate in self._groups.items():
            refit = gate.refresh(now)
            if refit is not None:
                refits[cid] = refit
        refit = self.global_gate.refresh(now)
        if refit is not None:
            refits[""] = refit
        return refits

    def describe(self, conversation_id: str) -> str:
        """One line about the gate a group uses, for ``/hxd status``."""
        gate = self.for_group(conversation_id)
        scope = "its own" if gate is not self.global_gate else "the global one"
        stored = gate.stored
        if stored is None:
            return f"{scope}, not calibrated yet"
        meta = stored.meta
        threshold = float(meta.get("threshold") or 0.0)
        line = (
            f"{scope} ({meta.get('kind')}, {meta.get('good')} good + {meta.get('bad')} bad "
            f"examples, cross-validated F1 {stored.f1:.3f}, threshold {threshold:.3f})"
        )
        history = gate.calibrator.history()
        if history:
            last = history[-1]
            in_use = last.get("f1_in_use")
            against = f" against {in_use:.3f} for the gate in use" if in_use is not None else ""
            kept = "used" if last.get("kept_new") else "not used (worse)"
            line += (
                f"; last refit {last.get('at')}: F1 {last.get('f1_after'):.3f}{against}, {kept}"
            )
        learned = self._learned.get(conversation_id)
        if learned is not None:
            line += f"; learned here: {len(learned.good)} good, {len(learned.bad)} bad"
        return line
