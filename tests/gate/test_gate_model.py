"""The gate's fitting on small fixtures: threshold, learned gate, fallback, prior correction."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.rejection.model import (
    add_log_odds,
    best_threshold,
    fit_gate,
    knn_features,
    prior_weights,
    shift_prior,
)

pytestmark = pytest.mark.unit


def separable(n_good: int, n_bad: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Good examples score high on the first feature and sit in one corner of the embedding."""
    rng = np.random.default_rng(seed)
    labels = np.array([1] * n_good + [0] * n_bad)
    base = np.column_stack(
        [
            np.where(
                labels == 1, rng.uniform(0.6, 0.9, len(labels)), rng.uniform(0.1, 0.4, len(labels))
            ),
            rng.normal(size=len(labels)),  # noise
        ]
    )
    centres = np.where(labels[:, None] == 1, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    emb = centres + rng.normal(scale=0.2, size=(len(labels), 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return base, emb.astype(np.float32), labels


def test_best_threshold_splits_separable_scores_halfway() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    result = best_threshold(labels, scores, np.ones(6))
    assert result.threshold == pytest.approx(0.5)
    assert (result.precision, result.recall, result.f1, result.accuracy) == (1.0, 1.0, 1.0, 1.0)


def test_best_threshold_maximises_f1_on_overlapping_scores() -> None:
    labels = np.array([1, 1, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.75, 0.7, 0.4, 0.3, 0.2])
    result = best_threshold(labels, scores, np.ones(7))
    # Accepting the top four (one false positive) beats stopping after the top two.
    assert 0.4 < result.threshold < 0.7
    assert result.f1 == pytest.approx(2 * 0.75 * 1.0 / 1.75)


def test_learned_gate_on_separable_data_is_perfect_and_decides_new_points() -> None:
    base, emb, labels = separable(30, 60)
    gate = fit_gate(base, emb, labels, ["kb_dense_max", "noise"], neighbours=3)
    assert gate.kind == "learned"
    assert gate.cv is not None and gate.cv.f1 == 1.0
    new_base, new_emb, new_labels = separable(5, 5, seed=1)
    scores, rows = gate.scores(new_base, new_emb, ["kb_dense_max", "noise"])
    assert rows.shape[1] == len(gate.feature_names)
    assert ((scores >= gate.threshold) == (new_labels == 1)).all()


def test_few_examples_fall_back_to_a_single_threshold_on_kb_similarity() -> None:
    base, emb, labels = separable(6, 8)
    gate = fit_gate(base, emb, labels, ["kb_dense_max", "noise"], min_examples=20)
    assert gate.kind == "threshold"
    assert gate.classifier is None
    good_scores = base[labels == 1, 0]
    bad_scores = base[labels == 0, 0]
    assert bad_scores.max() < gate.threshold < good_scores.min()
    scores, _ = gate.scores(
        np.array([[0.95, 0.0], [0.05, 0.0]]), emb[:2], ["kb_dense_max", "noise"]
    )
    assert list(scores >= gate.threshold) == [True, False]


def test_fit_refuses_examples_of_one_kind_only() -> None:
    base, emb, _ = separable(10, 0)
    with pytest.raises(ValueError, match="good and bad"):
        fit_gate(base, emb, np.ones(10, dtype=int), ["kb_dense_max", "noise"])


def test_prior_shift_turns_a_balanced_coin_into_the_real_share() -> None:
    # Learned on 50/50 examples, used where 85% of the traffic is chitchat.
    assert shift_prior(np.array([0.5]), 0.5, 0.15)[0] == pytest.approx(0.15)
    assert shift_prior(np.array([0.3]), 0.5, None)[0] == 0.3
    # Same mix as the examples: nothing changes.
    assert shift_prior(np.array([0.42]), 0.3, 0.3)[0] == pytest.approx(0.42)
    weights = prior_weights(np.array([1, 1, 0, 0]), 0.2)
    assert weights.tolist() == pytest.approx([0.4, 0.4, 1.6, 1.6])


def test_chitchat_share_makes_a_balanced_gate_stricter() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([1] * 30 + [0] * 30)
    # Overlapping classes, so the threshold is a real trade-off.
    base = np.column_stack([rng.normal(labels * 1.0, 0.8), rng.normal(size=60)])
    emb = rng.normal(size=(60, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = ["kb_dense_max", "noise"]
    plain = fit_gate(base, emb, labels, names)
    told = fit_gate(base, emb, labels, names, chitchat_share=0.85)
    probe = np.column_stack([np.linspace(-1, 2, 50), np.zeros(50)])
    probe_emb = emb[:50]
    accepted_plain = (plain.scores(probe, probe_emb, names)[0] >= plain.threshold).sum()
    accepted_told = (told.scores(probe, probe_emb, names)[0] >= told.threshold).sum()
    assert accepted_told < accepted_plain


def test_an_example_is_never_its_own_neighbour() -> None:
    emb = np.eye(3, dtype=np.float32)
    labels = np.array([1, 0, 1])
    with_self = knn_features(emb, emb, labels, k=1)
    without = knn_features(emb, emb, labels, k=1, exclude=np.arange(3))
    assert with_self[0, 0] == 1.0  # good_top1 of row 0 is itself
    assert without[0, 0] == 0.0  # its only other good neighbour is orthogonal


def test_a_mention_adds_log_odds_to_the_learned_gate() -> None:
    assert add_log_odds(np.array([0.3]), 1.0)[0] == pytest.approx(0.538, abs=1e-3)
    base, emb, labels = separable(30, 60)
    names = ["kb_dense_max", "mentioned"]
    base[:, 1] = 0.0  # examples never mention the bot
    gate = fit_gate(base, emb, labels, names, mention_boost=1.0)
    probe = np.array([[0.5, 0.0], [0.5, 1.0]])
    scores, _ = gate.scores(probe, emb[[0, 0]], names)
    assert scores[1] > scores[0]


def test_contributions_say_which_features_pushed_and_which_way() -> None:
    base, emb, labels = separable(30, 60)
    names = ["kb_dense_max", "noise"]
    gate = fit_gate(base, emb, labels, names)
    rows = gate.features(np.array([[0.85, 0.0], [0.15, 0.0]]), emb[[0, -1]])
    question, chitchat = gate.contributions(rows) or []
    assert question["kb_dense_max"] > 0 > chitchat["kb_dense_max"]
    assert abs(question["kb_dense_max"]) > abs(question["noise"])
    assert question["good_minus_bad"] > 0 > chitchat["good_minus_bad"]
    assert set(question) == set(gate.feature_names)
    # The more a row looks like a question, the higher its probability and its pushes' sum.
    scores, _ = gate.scores(np.array([[0.85, 0.0], [0.15, 0.0]]), emb[[0, -1]], names)
    assert scores[0] > scores[1]
    assert sum(question.values()) > sum(chitchat.values())


def test_contributions_include_the_mention_boost_and_are_none_without_a_linear_model() -> None:
    base, emb, labels = separable(30, 60)
    names = ["kb_dense_max", "mentioned"]
    base[:, 1] = 0.0
    gate = fit_gate(base, emb, labels, names, mention_boost=1.0)
    rows = gate.features(np.array([[0.5, 0.0], [0.5, 1.0]]), emb[[0, 0]])
    plain, mentioned = gate.contributions(rows) or []
    assert (plain["mention_boost"], mentioned["mention_boost"]) == (0.0, 1.0)
    boosting = fit_gate(base, emb, labels, names, kind="boosting")
    assert boosting.contributions(rows) is None
    few = fit_gate(base[:8], emb[:8], np.array([1, 1, 1, 1, 0, 0, 0, 0]), names)
    assert few.kind == "threshold" and few.contributions(rows) is None


def test_the_nearest_examples_are_named_with_their_similarity() -> None:
    base, emb, labels = separable(10, 10)
    gate = fit_gate(base, emb, labels, ["kb_dense_max", "noise"], min_examples=100)
    assert gate.nearest(emb[[3]], 1) == [[]]  # no example questions kept: nothing to name
    gate.example_queries = [f"good {i}" for i in range(10)] + [f"bad {i}" for i in range(10)]
    (good,), (bad,) = gate.nearest(emb[[3]], 1), gate.nearest(emb[[3]], 0)
    assert good[0] == ("good 3", pytest.approx(1.0, abs=1e-4))
    assert bad[0][0].startswith("bad ") and bad[0][1] < good[0][1]
