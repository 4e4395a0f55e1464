"""A trace told in words: every way a message ends reads as a sentence an admin understands."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app.console.explain import explain

pytestmark = pytest.mark.unit


def view(status: str, decision: str | None, trace: list[dict[str, Any]], **more: Any) -> Any:
    return {"status": status, "decision": decision, "trace": trace, "reply": None, **more}


def step(name: str, verdict: str = "pass", **fields: Any) -> dict[str, Any]:
    score, threshold = fields.pop("score", None), fields.pop("threshold", None)
    return {
        "name": name,
        "verdict": verdict,
        "score": score,
        "threshold": threshold,
        "ms": 2.0,
        "detail": fields,
    }


def gate(verdict: str, score: float, **detail: Any) -> dict[str, Any]:
    return step("reject.embedding", verdict, score=score, threshold=0.5, **detail)


def test_the_gate_silence_names_the_nearest_examples_and_the_documentation() -> None:
    pushes = {"kb_dense_max": -0.8, "title_max": -0.3, "bad_top1": -1.2, "question_mark": 0.4}
    found = explain(
        view(
            "ignored",
            "ignored: off-topic",
            [
                step("normalize"),
                gate(
                    "ignored: off-topic",
                    0.031,
                    gate="learned",
                    features={"kb_dense_max": 0.12, "question_mark": 1.0},
                    contributions=pushes,
                    nearest_good=[{"text": "怎么安装 MMFoo？", "similarity": 0.41}],
                    nearest_bad=[{"text": "早上好各位，今天天气真好啊大家", "similarity": 0.93}],
                ),
            ],
        )
    )
    assert found.outcome == "silent" and found.bubble == "stayed silent: off-topic"
    assert found.sentences[0] == (
        "silent: the gate gave 0.03, needs 0.50; it looked most like your bad examples "
        "('早上好各位，今天天气真好啊大家'), and little like the documentation"
    )
    assert [p.feature for p in found.toward_silence] == ["bad_top1", "kb_dense_max", "title_max"]
    assert [p.feature for p in found.toward_answer] == ["question_mark"]
    assert found.toward_silence[0].percent == 100 and found.toward_answer[0].raw == 1.0


def test_without_contributions_the_trace_says_why() -> None:
    boosting = explain(
        view(
            "ignored",
            "ignored: off-topic",
            [
                gate(
                    "ignored: off-topic",
                    0.2,
                    gate="learned",
                    features={"kb_dense_max": 0.3},
                    contributions=None,
                )
            ],
        )
    )
    assert "not for boosting" in boosting.pushes_note
    assert "nearest passage in the documentation has similarity 0.30" in boosting.sentences[0]
    threshold = explain(
        view(
            "ignored",
            "ignored: off-topic",
            [gate("ignored: off-topic", 0.2, gate="threshold", features={})],
        )
    )
    assert "single threshold" in threshold.pushes_note


def test_other_stops_failures_merges_and_answers() -> None:
    retrieve = explain(
        view(
            "ignored",
            "ignored: no-knowledge",
            [
                gate("pass", 0.8, gate="learned"),
                step("retrieve", "ignored: no-knowledge", score=0.08, threshold=0.15),
            ],
        )
    )
    assert retrieve.sentences == [
        "silent: nothing in the knowledge base was close enough to answer from (scored 0.08, "
        "needs 0.15) (decided by retrieve)",
        "passed the gate: the gate gave 0.80, needs 0.50",
    ]
    failed = explain(
        view(
            "failed", "failed: TimeoutError: slow", [step("generate", "error: TimeoutError: slow")]
        )
    )
    assert failed.outcome == "failed" and failed.sentences == [
        "failed in generate: TimeoutError: slow"
    ]
    merged = explain(view("ignored", "merged into #12", []))
    assert merged.bubble == "merged into #12"
    assert merged.sentences == [
        "silent: it was answered together with the message it was merged into"
    ]
    pending = explain(view("processing", None, []))
    assert pending.outcome == "pending" and not pending.final
    hits = [
        {"source": "https://docs.example/a", "title": "A", "score": 0.9},
        {"source": "docs/b.md", "title": "B", "score": 0.5},
    ]
    answered = explain(
        view(
            "answered",
            "answered",
            [step("retrieve", hits=hits), step("send")],
            reply={
                "text": "do X [1]",
                "references": [
                    {
                        "source": "https://web.example/c",
                        "title": "C",
                        "url": "https://web.example/c",
                    },
                    {"source": "docs/b.md", "title": "B", "url": ""},
                ],
            },
        )
    )
    assert answered.bubble == "do X [1]" and answered.final
    assert answered.sentences[0].startswith("answered in 0.0 s, citing 2 sources")
    assert [(p.title, p.link) for p in answered.passages] == [
        ("A", "https://docs.example/a"),
        ("B", None),
        ("C", "https://web.example/c"),
    ]
