"""Reading 0-10 scores: parsing model text, and the score() helper with scripted models."""

from __future__ import annotations

from typing import Any

import pytest

from bot.llm.protocol import LLMError, collect_notes
from bot.llm.scoring import Score, parse_score, score, score_from_probabilities
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.unit

MESSAGES: Any = [{"role": "user", "content": "Rate it from 0 to 10."}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", 7.0),
        (" 7.", 7.0),
        ("**9**", 9.0),
        ("Score: 8", 8.0),
        ("8/10", 8.0),
        ("7 out of 10", 7.0),
        ("10", 10.0),
        ("0", 0.0),
        ("7.5", 7.5),
        ("８分", 8.0),
        ("七分", 7.0),
        ("评分：6分", 6.0),
        ("8分（满分10分）", 8.0),
        ("满分10分，我给3分", 3.0),
        ("On a scale of 0 to 10, I would give it 6.", 6.0),
        ("6 (0-10 scale)", 6.0),
        ("9. The answer quotes passage [2] directly.", 9.0),
        ("5 5", 5.0),
    ],
)
def test_parse_score_reads_one_clear_number(text: str, expected: float) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yes",
        "The answer is relevant.",
        "12",
        "-3",
        "between 3 and 7",
        "85",
        "N/A",
        "I think 3, maybe 7",
    ],
)
def test_parse_score_refuses_unclear_answers(text: str) -> None:
    assert parse_score(text) is None


def test_expected_value_from_probabilities() -> None:
    result = score_from_probabilities({9: 0.3, 10: 0.2}, mass=0.5, text="9")
    assert result.value == pytest.approx(9.4)
    assert result.method == "probabilities"
    assert result.probabilities == {9: pytest.approx(0.6), 10: pytest.approx(0.4)}
    fallback = score_from_probabilities({}, mass=0.0, text="4")
    assert (fallback.value, fallback.method) == (4.0, "text")


async def test_score_with_a_text_model_parses_its_answers() -> None:
    model = ScriptedChatModel(["Score: 8/10", "I'd rather not say", "11", "六分"])
    results = [await score(model, MESSAGES) for _ in range(4)]
    assert [r.value for r in results] == [8.0, None, None, 6.0]
    assert [r.method for r in results] == ["text", "unreadable", "unreadable", "text"]
    assert results[1].text == "I'd rather not say"
    assert not results[1].readable


class Broken(ScriptedChatModel):
    async def complete(self, messages: Any, **kwargs: Any) -> Any:
        raise LLMError("model server is down")


async def test_a_failing_model_gives_an_error_score_not_an_exception() -> None:
    result = await score(Broken(), MESSAGES)
    assert result == Score(None, "scripted: model server is down", "error")


async def test_score_detail_is_compact_for_the_trace() -> None:
    with collect_notes() as notes:
        result = await score(ScriptedChatModel("7"), MESSAGES)
    assert result.detail() == {"score": 7.0, "method": "text", "answer": "7", "model": "scripted"}
    assert notes == {}  # one model: no routing to report
