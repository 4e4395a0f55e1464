"""Teaching the rejection gate from the console.

A change to the examples ("should have answered", an edited list) is fitted as a candidate
gate beside the one in use, without replacing it; the admin sees both gates' cross-validated
precision / recall / F1 (and what the candidate makes of the message) and only a confirm writes
the examples and puts the candidate in use. Blocking (fitting): async callers use a thread.

The examples are the global gate's (``ExampleFiles``, the files named in bot.yaml); a group's
own examples plug in where ``examples_store`` chooses the store.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from knowledge.rejection.calibrate import CalibrationReport, Candidate
from knowledge.rejection.examples import ExampleFiles, Examples
from knowledge.rejection.gate import RejectionGate
from knowledge.rejection.store import Decision
from knowledge.settings import RejectionSettings

# Proposals wait this long for the admin's confirm.
PROPOSAL_SECONDS = 3600


class TeachError(Exception):
    """Teaching cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Figures:
    """A gate's cross-validated figures, as the confirm page shows them side by side."""

    kind: str
    good: int
    bad: int
    precision: float | None
    recall: float | None
    f1: float | None
    threshold: float | None

    @classmethod
    def of_meta(cls, meta: dict[str, Any]) -> Figures:
        cv = meta.get("cv") or {}
        return cls(
            kind=str(meta.get("kind", "?")),
            good=int(meta.get("good", 0)),
            bad=int(meta.get("bad", 0)),
            precision=cv.get("precision"),
            recall=cv.get("recall"),
            f1=cv.get("f1"),
            threshold=meta.get("threshold"),
        )

    @classmethod
    def of_report(cls, report: CalibrationReport) -> Figures:
        return cls(
            report.kind,
            report.good,
            report.bad,
            report.precision,
            report.recall,
            report.f1,
            report.threshold,
        )


@dataclass(frozen=True)
class Proposal:
    """A candidate gate waiting for the admin's confirm."""

    token: str
    what: list[str]  # the changes, in words
    based_on: str  # the fingerprint of the examples it changes
    examples: Examples
    candidate: Candidate
    before: Figures | None
    after: Figures
    # What the gate in use and the candidate make of the message being taught, if any.
    message: str | None = None
    decision_before: Decision | None = None
    decision_after: Decision | None = None


def examples_store(settings: RejectionSettings) -> ExampleFiles:
    """Where the gate's examples are kept: the one function the console reads and writes them
    through (today the global files; a group's own examples would be chosen here)."""
    return ExampleFiles(settings.good_questions, settings.bad_questions)


def edited(
    examples: Examples,
    *,
    remove_good: set[int],
    remove_bad: set[int],
    add_good: list[str],
    add_bad: list[str],
) -> Examples:
    """The examples page's edit: drop the ticked ones (by position), add new lines (each once;
    a question added to one kind leaves the other)."""
    good = [q for i, q in enumerate(examples.questions(1)) if i not in remove_good]
    bad = [q for i, q in enumerate(examples.questions(0)) if i not in remove_bad]
    for line in add_good:
        if (question := " ".join(line.split())) and question not in good:
            good.append(question)
            bad = [q for q in bad if q != question]
    for line in add_bad:
        if (question := " ".join(line.split())) and question not in bad:
            bad.append(question)
            good = [q for q in good if q != question]
    return Examples.from_lists(good, bad)


def describe_changes(old: Examples, new: Examples) -> list[str]:
    """The difference between two example sets, in words."""
    old_label = dict(zip(old.queries, (int(v) for v in old.labels), strict=True))
    new_label = dict(zip(new.queries, (int(v) for v in new.labels), strict=True))
    kind = {1: "good", 0: "bad"}
    changes = []
    for query, label in new_label.items():
        before = old_label.get(query)
        if before is None:
            changes.append(f"add '{query}' to the {kind[label]} examples")
        elif before != label:
            changes.append(f"move '{query}' from the {kind[before]} to the {kind[label]} examples")
    for query, label in old_label.items():
        if query not in new_label:
            changes.append(f"remove '{query}' from the {kind[label]} examples")
    return changes


class Teacher:
    def __init__(self, gate: RejectionGate | None, store: ExampleFiles) -> None:
        self.gate = gate
        self.store = store
        self._proposals: TTLCache[str, Proposal] = TTLCache(maxsize=16, ttl=PROPOSAL_SECONDS)
        self._applied: TTLCache[str, Proposal] = TTLCache(maxsize=16, ttl=PROPOSAL_SECONDS)
        self._lock = threading.Lock()

    def _require_gate(self) -> RejectionGate:
        if self.gate is None:
            raise TeachError(
                "the rejection gate is not in use: add reject.embedding to the pipeline (and a "
                "knowledge base) to teach it"
            )
        return self.gate

    def examples(self) -> Examples:
        return self.store.load()

    def propose(
        self, examples: Examples, message: str | None = None, mentioned: bool = False
    ) -> Proposal:
        """Fit a candidate from ``examples`` (the gate in use stays) and keep it for
        ``apply``."""
        gate = self._require_gate()
        current = self.examples()
        changes = describe_changes(current, examples)
        if not changes:
            raise TeachError("nothing to change: the examples already say so")
        if examples.good == 0 or examples.bad == 0:
            raise TeachError("the gate needs at least one good and one bad example")
        candidate = gate.candidate(examples)
        stored = gate.stored
        proposal = Proposal(
            token=secrets.token_urlsafe(16),
            what=changes,
            based_on=current.fingerprint(),
            examples=examples,
            candidate=candidate,
            before=Figures.of_meta(stored.meta) if stored is not None else None,
            after=Figures.of_report(candidate.report),
            message=message,
            decision_before=gate.decide([message], [mentioned])[0] if message else None,
            decision_after=candidate.gate.decide(gate.calibrator.space, [message], [mentioned])[0]
            if message
            else None,
        )
        self._proposals[proposal.token] = proposal
        return proposal

    def teach(self, text: str, good: bool, mentioned: bool = False) -> Proposal:
        """ "Should have answered" (good) or "should have stayed silent" about one message."""
        question = " ".join(text.split())
        if not question:
            raise TeachError("an empty message teaches nothing")
        examples = self.examples().taught(question, 1 if good else 0)
        return self.propose(examples, message=question, mentioned=mentioned)

    def applied(self, token: str) -> Proposal | None:
        """A proposal applied lately, to say so on the next page."""
        return self._applied.get(token)

    def apply(self, token: str) -> Proposal:
        """Write the proposal's examples and use its gate from the next message on."""
        gate = self._require_gate()
        with self._lock:
            proposal = self._proposals.pop(token, None)
            if proposal is None:
                raise TeachError("this proposal has expired or was applied already: teach again")
            if self.examples().fingerprint() != proposal.based_on:
                raise TeachError("the examples changed since this proposal was made: teach again")
            self.store.save(proposal.examples)
            gate.use(proposal.candidate)
            self._applied[token] = proposal
        return proposal
