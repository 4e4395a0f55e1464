"""Teaching the rejection gates from the console.

"Should have answered" / "should have stayed silent" on a message is an admin's word about its
question, stored like an admin's ``/hxd good`` / ``bad`` in that group (``groups.add_feedback``,
source admin): the learning job (``bot.app.learning``) turns it into the group's learned
examples, which the gate that group uses is fitted from. The example files named in bot.yaml,
the global gate's own examples, are edited here too.

Either change is first fitted as a candidate beside the gate in use, which keeps deciding; the
admin sees both gates' cross-validated figures, and only a confirm stores the change and puts
the candidate in use. Blocking (fitting, the database): async callers use a thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache

from bot.app.learning import confirmed
from bot.storage import groups
from bot.storage.db import Database
from bot.storage.models import FeedbackSource
from knowledge.rejection.calibrate import CalibrationReport, Candidate
from knowledge.rejection.examples import ExampleFiles, Examples
from knowledge.rejection.gate import RejectionGate
from knowledge.rejection.gates import RejectionGates
from knowledge.rejection.learned import write_learned
from knowledge.rejection.store import Decision
from knowledge.settings import RejectionSettings

log = logging.getLogger(__name__)

# Proposals wait this long for the admin's confirm.
PROPOSAL_SECONDS = 3600
# Who the feedback rows say taught it.
CONSOLE_USER = "console"


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
class Word:
    """An admin's word about one message's question: answer it (1) or stay silent (-1)."""

    message_id: int
    reply_id: int | None
    example: str
    rating: int


@dataclass(frozen=True)
class Proposal:
    """A candidate gate waiting for the admin's confirm, and the change it was fitted from."""

    token: str
    what: list[str]  # the change, in words
    gate: RejectionGate
    scope: str  # which gate, in words
    based_on: str  # the fingerprint of the examples the gate in use was fitted from
    candidate: Candidate
    before: Figures | None
    # The gate in use judged on the new examples (knowledge.rejection.gate: f1_on).
    before_on_new: float | None
    after: Figures
    word: Word | None = None  # to store as feedback, or
    files: Examples | None = None  # to write to the example files
    # What the gate in use and the candidate make of the message being taught, if any.
    decision_before: Decision | None = None
    decision_after: Decision | None = None


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
    def __init__(
        self,
        gates: RejectionGates | None,
        database: Database,
        settings: RejectionSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self.gates = gates
        self.database = database
        self.settings = settings
        self.clock = clock
        self.files = ExampleFiles(settings.good_questions, settings.bad_questions)
        self._proposals: TTLCache[str, Proposal] = TTLCache(maxsize=16, ttl=PROPOSAL_SECONDS)
        self._applied: TTLCache[str, Proposal] = TTLCache(maxsize=16, ttl=PROPOSAL_SECONDS)
        self._lock = threading.Lock()

    def _require_gates(self) -> RejectionGates:
        if self.gates is None:
            raise TeachError(
                "the rejection gate is not in use: add reject.embedding to the pipeline (and a "
                "knowledge base) to teach it"
            )
        return self.gates

    def _scope(self, gate: RejectionGate, conversation_id: str) -> str:
        if self.gates is not None and gate is not self.gates.global_gate:
            return f"the gate of its own of group {conversation_id}"
        return "the global gate"

    def _propose(
        self,
        gate: RejectionGate,
        current: Examples,
        examples: Examples,
        what: list[str],
        scope: str,
        *,
        word: Word | None = None,
        files: Examples | None = None,
        mentioned: bool = False,
    ) -> Proposal:
        if not what:
            raise TeachError("nothing to change: the examples already say so")
        if examples.good == 0 or examples.bad == 0:
            raise TeachError("the gate needs at least one good and one bad example")
        stored = gate.stored
        candidate = gate.candidate(examples)
        before, after = None, None
        if word is not None:
            before = gate.decide([word.example], [mentioned])[0]
            space = gate.calibrator.space
            after = candidate.gate.decide(space, [word.example], [mentioned])[0]
        proposal = Proposal(
            token=secrets.token_urlsafe(16),
            what=what,
            gate=gate,
            scope=scope,
            based_on=current.fingerprint(),
            candidate=candidate,
            before=Figures.of_meta(stored.meta) if stored is not None else None,
            before_on_new=gate.f1_on(stored, examples, candidate.gate),
            after=Figures.of_report(candidate.report),
            word=word,
            files=files,
            decision_before=before,
            decision_after=after,
        )
        self._proposals[proposal.token] = proposal
        return proposal

    def teach(self, view: dict[str, Any], good: bool) -> Proposal:
        """ "Should have answered" (good) or "should have stayed silent" about one stored
        message (a ``repo.message_view``): fitted for the gate its group uses."""
        gates = self._require_gates()
        example = " ".join(str(view["text"]).split())
        if not example:
            raise TeachError("an empty message teaches nothing")
        group = str(view["conversation_id"])
        reply = view.get("reply") or {}
        word = Word(int(view["id"]), reply.get("id"), example, 1 if good else -1)
        gates.sync()
        rows = self.database.run_sync(groups.all_feedback)
        pending = groups.FeedbackRow(
            id=0,
            conversation_id=group,
            example=example,
            rating=word.rating,
            user_id=CONSOLE_USER,
            source=FeedbackSource.ADMIN,
            created_at=self.clock(),
        )
        learned = confirmed([*rows, pending], self.settings.learn_votes)
        gate, examples = gates.examples_with(group, learned)
        current = gate.calibrator.examples()
        return self._propose(
            gate,
            current,
            examples,
            describe_changes(current, examples),
            self._scope(gate, group),
            word=word,
            mentioned=bool(view.get("mentioned_bot")),
        )

    def edit_files(self, files: Examples) -> Proposal:
        """New contents for the example files: fitted for the global gate."""
        gates = self._require_gates()
        gates.sync()
        gate = gates.global_gate
        return self._propose(
            gate,
            gate.calibrator.examples(),
            gates.global_examples(files=files),
            describe_changes(self.files.load(), files),
            "the global gate",
            files=files,
        )

    def applied(self, token: str) -> Proposal | None:
        """A proposal applied lately, to say so on the next page."""
        return self._applied.get(token)

    def apply(self, token: str) -> Proposal:
        """Store the proposal's change (feedback, or the example files) and use its gate from
        the next message on."""
        gates = self._require_gates()
        with self._lock:
            proposal = self._proposals.pop(token, None)
            if proposal is None:
                raise TeachError("this proposal has expired or was applied already: teach again")
            gates.sync()
            if proposal.gate.calibrator.examples().fingerprint() != proposal.based_on:
                raise TeachError("the examples changed since this proposal was made: teach again")
            if proposal.word is not None:
                self._store(proposal.word)
            if proposal.files is not None:
                self.files.save(proposal.files)
            gates.sync()
            if proposal.gate.calibrator.examples().fingerprint() != (
                proposal.candidate.gate.meta.get("examples")
            ):
                log.warning("the taught examples differ from the candidate's: the job refits")
            proposal.gate.use(proposal.candidate)
            self._applied[token] = proposal
        return proposal

    def _store(self, word: Word) -> None:
        """The admin's word as feedback, then the learned examples written from all of it, as
        the learning job writes them."""
        self.database.run_sync(
            groups.add_feedback,
            message_id=word.message_id,
            reply_id=word.reply_id,
            user_id=CONSOLE_USER,
            rating=word.rating,
            source=FeedbackSource.ADMIN,
            example=word.example,
            comment="console: should have " + ("answered" if word.rating > 0 else "stayed silent"),
            at=self.clock(),
        )
        rows = self.database.run_sync(groups.all_feedback)
        write_learned(self._require_gates().work_dir, confirmed(rows, self.settings.learn_votes))
