"""The gate's settings: per-group overrides merged over the global ones, clear errors, and the
small rules (hours, budget strictness, feedback words) on their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.app.services import build_services
from bot.config import Config, ConfigError
from bot.middlewares.gate import BudgetOptions, FeedbackOptions, GateOptions, feedback_rating
from bot.pipeline import build_pipelines
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.unit


def gate_of(config: Config) -> Any:
    pipeline = build_pipelines(build_services(config, llm=ScriptedChatModel()))[""]
    return next(m for m in pipeline.middlewares if m.name == "gate")


def test_group_overrides_are_merged_key_by_key(config_factory: Callable[..., Config]) -> None:
    config = config_factory(
        {
            "pipeline": ["normalize", "gate", "generate"],
            "middleware": {"gate": {"admins": ["root"], "budget": {"per_hour": 10}}},
            "groups": {"oc_a": {"middleware": {"gate": {"budget": {"min_gap_seconds": 5}}}}},
        }
    )
    gate = gate_of(config)
    own = gate.options_for_group("oc_a")
    assert (own.budget.per_hour, own.budget.min_gap_seconds, own.admins) == (10, 5, ["root"])
    other = gate.options_for_group("oc_b")
    assert (other.budget.per_hour, other.budget.min_gap_seconds) == (10, 30)


@pytest.mark.parametrize(
    ("groups", "middleware", "message"),
    [
        (
            {"oc_a": {"middleware": {"gate": {"budget": {"per_huor": 3}}}}},
            {},
            r"groups\.oc_a\.middleware\.gate\.budget\.per_huor: unknown key",
        ),
        (
            {"oc_a": {"middleware": {"cite": {"max_references": 1}}}},
            {},
            r"groups\.oc_a\.middleware\.cite: settings for a middleware that is not in this "
            r"group's pipeline",
        ),
        ({}, {"gate": {"timezone": "Mars/Olympus"}}, r"middleware\.gate\.timezone: .*unknown"),
        ({}, {"gate": {"working_hours": ["9-18"]}}, r"working_hours: .*09:00-18:00"),
    ],
)
def test_mistakes_name_the_key(
    config_factory: Callable[..., Config],
    groups: dict[str, Any],
    middleware: dict[str, Any],
    message: str,
) -> None:
    config = config_factory(
        {"pipeline": ["normalize", "gate", "generate"], "middleware": middleware, "groups": groups}
    )
    with pytest.raises(ConfigError, match=message):
        gate_of(config)


def test_quiet_days_and_hours_in_the_groups_time_zone() -> None:
    options = GateOptions(
        timezone="Asia/Shanghai", working_hours=["09:00-18:00"], quiet_days=["sun"],
        quiet_dates=["2026-10-01"],
    )  # fmt: skip
    wednesday_10 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert options.quiet_reason(wednesday_10) is None  # a weekday is a working day
    assert options.quiet_reason(datetime(2026, 12, 2, 11, 0, tzinfo=UTC)) == "off-hours"
    assert options.quiet_reason(datetime(2026, 12, 6, 2, 0, tzinfo=UTC)) == "quiet-day"
    assert options.quiet_reason(datetime(2026, 10, 1, 2, 0, tzinfo=UTC)) == "quiet-day"
    # Saturday is not listed: working hours apply as on any day.
    assert options.quiet_reason(datetime(2026, 12, 5, 2, 0, tzinfo=UTC)) is None
    always = GateOptions(working_hours=["00:00-24:00"])
    assert always.quiet_reason(datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)) is None


def test_strictness_rises_linearly_as_the_budget_drains() -> None:
    budget = BudgetOptions(per_hour=10, rise_from=0.5, max_strictness=0.8)
    assert [budget.strictness(used) for used in (0, 5, 6, 8, 10, 12)] == [
        0.0, 0.0, 0.16, 0.48, 0.8, 0.8,
    ]  # fmt: skip
    assert BudgetOptions(per_hour=None).strictness(1000) == 0.0


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("thanks!", 1), ("Thank you, that works", 1), ("谢谢", 1), ("解决了，感谢", 1),
        ("wrong", -1), ("不对", -1), ("not helpful", -1), ("this doesn't work", -1),
        ("know what? nope", -1), ("and on windows?", 0), ("tyre pressure", 0),
        ("thanks, but how do I also export the model to ONNX with dynamic shapes?", 0),
    ],
)  # fmt: skip
def test_feedback_words(text: str, rating: int) -> None:
    assert feedback_rating(text, FeedbackOptions()) == rating
