"""A message's decision trace, told in words: what the bot did, which step decided and why, the
features that pushed the rejection gate toward answering or silence, the passages it found and
where the time went. The raw trace stays available beside it; this only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.app.console.queries import reason_of
from bot.storage.models import FINAL_STATUSES

Outcome = Literal["answered", "silent", "failed", "pending"]

# How the reasons a middleware gives (``ctx.ignore(reason)``) read to an admin.
REASONS = {
    "empty": "the message was empty once @-mentions and quotes were removed",
    "not-mentioned": "this group is answered only when the bot is @-mentioned",
    "off-topic": "it does not look like a question about the documentation",
    "chitchat": "the model judged it chitchat, not a real question",
    "unsure": "the bot was not sure enough of its answer",
    "no-knowledge": "nothing in the knowledge base was close enough to answer from",
    "no-answer": "the model gave an empty answer",
    "overloaded": "too many messages were already waiting in this conversation",
    "merged": "it was answered together with the message it was merged into",
    "expired": "a restart left it unfinished, and it was too old to answer by then",
    "over-budget": "the group's reply budget for the hour was spent",
    "off-hours": "it came outside the bot's working hours",
    "quiet-day": "it came on one of the bot's quiet days",
    "paused": "an admin paused the bot in this group (/hxd pause)",
    "feedback": "it was feedback on an earlier answer, kept to teach the gate",
    "command": "it was an admin command from someone who is not an admin",
    "injection": "it tried to give the bot instructions (the guard)",
    "leak": "the answer would have given away what it must not (the guard)",
    "answered-by-human": "a person answered it first, so the bot's held reply was withdrawn",
}

# Answers that are not plain answers (the decision after "answered"/"tagged"/"command").
ANSWER_KINDS = {
    "duplicate": " by pointing to an earlier answer",
    "tagged": " by tagging a person",
    "command": " an admin command",
}

# The rejection gate's features, as an admin would name them.
FEATURES = {
    "kb_dense_max": "closeness to the nearest passage of the documentation",
    "kb_dense_topk": "closeness to the nearest few passages",
    "kb_bm25_max": "words shared with the documentation",
    "title_max": "closeness to a documentation heading",
    "title_top5": "closeness to the nearest headings",
    "log_chars": "length",
    "question_mark": "a question mark",
    "ask_words": "question words (吗, 怎么, how, why …)",
    "help_words": "help words (请问, 报错, error …)",
    "code_marks": "code, paths or log lines",
    "latin_share": "share of Latin-script words",
    "tech_tokens": "technical terms",
    "stickers": "stickers like [旺柴]",
    "laughter": "laughter",
    "sentences": "number of sentences",
    "zh": "written in Chinese",
    "mentioned": "@-mentioned the bot",
    "mention_boost": "@-mentioned the bot (rejection.mention_boost)",
    "good_top1": "likeness to the nearest good example",
    "good_topk": "likeness to the nearest good examples",
    "bad_top1": "likeness to the nearest bad example",
    "bad_topk": "likeness to the nearest bad examples",
    "good_minus_bad": "nearer the good than the bad examples",
    "good_centroid": "likeness to the good examples overall",
    "bad_centroid": "likeness to the bad examples overall",
    "centroid_diff": "more like the good than the bad examples overall",
}
DOCUMENTATION = ("kb_dense_max", "kb_dense_topk", "kb_bm25_max", "title_max", "title_top5")
# Pushes smaller than this (log-odds) are left out of the lists.
NOTABLE = 0.05
SHOWN = 5
QUOTE = 24


@dataclass(frozen=True)
class Push:
    """One feature's pull toward answering (value > 0) or silence (value < 0)."""

    feature: str
    words: str
    value: float
    raw: float | None
    percent: int  # bar length, relative to the strongest push


@dataclass(frozen=True)
class Passage:
    title: str
    source: str
    link: str | None
    score: float | None


@dataclass
class Explanation:
    outcome: Outcome
    # The bot's bubble: its answer, or what it did instead.
    bubble: str
    # The message's story has ended (answered, ignored, failed, expired).
    final: bool = False
    # The trace in words, most important first.
    sentences: list[str] = field(default_factory=list)
    toward_answer: list[Push] = field(default_factory=list)
    toward_silence: list[Push] = field(default_factory=list)
    # Why there are no pushes, when there are none to show for the gate.
    pushes_note: str = ""
    passages: list[Passage] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    deciding_step: str | None = None

    @property
    def total_ms(self) -> float:
        return round(sum(ms for _, ms in self.timings), 3)

    @property
    def headline(self) -> str:
        return self.sentences[0] if self.sentences else self.bubble


def quote(text: str, limit: int = QUOTE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _clock(value: Any) -> str:
    """A stored ISO time as HH:MM:SS UTC."""
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%H:%M:%S UTC")
    except ValueError:
        return str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def outcome_of(view: dict[str, Any]) -> Outcome:
    status = view.get("status")
    if status in ("answered", "replying") and view.get("reply"):
        return "answered"
    if status == "failed":
        return "failed"
    if status in ("ignored", "expired"):
        return "silent"
    return "pending"


def explain(view: dict[str, Any]) -> Explanation:
    """Read one ``repo.message_view`` dict."""
    trace: list[dict[str, Any]] = view.get("trace") or []
    outcome = outcome_of(view)
    decision = view.get("decision") or ""
    reason = reason_of(decision)
    reply = view.get("reply") or {}
    if reply.get("status") == "held":
        bubble = f"holding until {_clock(reply.get('not_before'))} so a person can answer "
        bubble += f"first; then: {reply.get('text') or ''}"
    elif outcome == "answered":
        bubble = reply.get("text") or ""
        if reply.get("deleted"):
            bubble = "(deleted by an admin) " + bubble
    elif outcome == "silent":
        bubble = f"stayed silent: {reason}" if reason != "merged" else decision
    elif outcome == "failed":
        bubble = decision or view.get("status", "failed")
    else:
        bubble = f"…thinking ({view.get('status')})"
    found = Explanation(outcome, bubble, final=view.get("status") in FINAL_STATUSES)
    found.timings = [(str(s.get("name")), float(s.get("ms") or 0.0)) for s in trace]
    deciding = next(
        (s for s in trace if str(s.get("verdict", "")).startswith(("ignored", "error"))), None
    )
    found.deciding_step = deciding.get("name") if deciding else None
    gate = next((s for s in trace if s.get("name") == "reject.embedding"), None)
    if outcome == "silent" and deciding is not None and deciding is not gate:
        found.sentences.append(_stopped(deciding, reason))
    elif outcome == "silent" and deciding is None:
        words = REASONS.get(reason)
        found.sentences.append(f"silent: {words}" if words else f"silent: {decision}")
    elif outcome == "failed":
        step = f" in {deciding['name']}" if deciding else ""
        found.sentences.append(f"failed{step}: {decision.removeprefix('failed: ')}")
    if gate is not None:
        found.sentences.insert(0 if deciding is gate else len(found.sentences), _gate(gate))
        _pushes(found, gate)
    if outcome == "answered":
        sources = len(reply.get("references") or [])
        cited = f", citing {sources} source{'s' if sources != 1 else ''}" if sources else ""
        how = ANSWER_KINDS.get(reason, "")
        found.sentences.insert(0, f"answered{how} in {found.total_ms / 1000:.1f} s{cited}")
    found.passages = _passages(trace, reply)
    return found


def _stopped(step: dict[str, Any], reason: str) -> str:
    """One sentence for a step other than the gate that silenced the message."""
    name = step.get("name")
    detail = step.get("detail") or {}
    score, threshold = _number(step.get("score")), _number(step.get("threshold"))
    words = REASONS.get(reason, reason)
    measured = ""
    if score is not None and threshold is not None:
        measured = f" (scored {score:.2f}, needs {threshold:.2f})"
    why = detail.get("why")
    extra = f": {why}" if isinstance(why, str) and why else ""
    return f"silent: {words}{measured}{extra} (decided by {name})"


def _gate(step: dict[str, Any]) -> str:
    """The gate's verdict: its probability against the threshold, the nearest examples, and
    how close the message was to the documentation."""
    detail = step.get("detail") or {}
    score, threshold = _number(step.get("score")), _number(step.get("threshold"))
    silent = str(step.get("verdict", "")).startswith("ignored")
    head = "silent" if silent else "passed the gate"
    if score is None or threshold is None:
        return f"{head}: {step.get('verdict')}"
    first = f"{head}: the gate gave {score:.2f}, needs {threshold:.2f}"
    more = []
    good = (detail.get("nearest_good") or [None])[0]
    bad = (detail.get("nearest_bad") or [None])[0]
    if good and bad:
        kind, nearest = ("bad", bad) if bad["similarity"] > good["similarity"] else ("good", good)
        more.append(f"it looked most like your {kind} examples ('{quote(nearest['text'])}')")
    contributions = detail.get("contributions")
    features = detail.get("features") or {}
    if contributions:
        pull = sum(float(contributions.get(name, 0.0)) for name in DOCUMENTATION)
        if pull <= -0.25:
            more.append("little like the documentation")
        elif pull >= 0.25:
            more.append("much like the documentation")
        else:
            more.append("somewhat like the documentation")
    elif "kb_dense_max" in features:
        more.append(
            f"its nearest passage in the documentation has similarity "
            f"{float(features['kb_dense_max']):.2f}"
        )
    return first + ("; " + ", and ".join(more) if more else "")


def _pushes(found: Explanation, step: dict[str, Any]) -> None:
    detail = step.get("detail") or {}
    contributions: dict[str, float] | None = detail.get("contributions")
    features: dict[str, float] = detail.get("features") or {}
    if not contributions:
        kind = detail.get("gate")
        found.pushes_note = (
            "this gate is a single threshold on the similarity to the documentation (too few "
            "examples for a learned gate): no per-feature contributions"
            if kind == "threshold"
            else "per-feature contributions are available for the logistic gate only "
            "(rejection.model: logistic), not for boosting"
            if kind == "learned"
            else "no per-feature contributions were recorded for this message"
        )
        return
    strongest = max((abs(v) for v in contributions.values()), default=0.0) or 1.0
    pushes = [
        Push(
            name,
            FEATURES.get(name, name),
            round(float(value), 2),
            _number(features.get(name)),
            max(2, round(100 * abs(value) / strongest)),
        )
        for name, value in contributions.items()
        if abs(value) >= NOTABLE
    ]
    found.toward_answer = sorted((p for p in pushes if p.value > 0), key=lambda p: -p.value)[
        :SHOWN
    ]
    found.toward_silence = sorted((p for p in pushes if p.value < 0), key=lambda p: p.value)[
        :SHOWN
    ]


def _link(source: str) -> str | None:
    return source if source.startswith(("http://", "https://")) else None


def _passages(trace: list[dict[str, Any]], reply: dict[str, Any]) -> list[Passage]:
    """The retrieved passages (with scores), then any cited source not among them (web
    pages)."""
    passages: list[Passage] = []
    seen: set[tuple[str, str]] = set()
    for step in trace:
        if step.get("name") != "retrieve":
            continue
        for hit in (step.get("detail") or {}).get("hits") or []:
            source, title = str(hit.get("source", "")), str(hit.get("title", ""))
            seen.add((source, title))
            passages.append(Passage(title, source, _link(source), _number(hit.get("score"))))
    for ref in reply.get("references") or []:
        source, title = str(ref.get("source", "")), str(ref.get("title", ""))
        url = str(ref.get("url") or "") or _link(source)
        if (source, title) in seen:
            continue
        seen.add((source, title))
        passages.append(Passage(title, source, url, None))
    return passages
