"""Reject/defer value: hand cases, threshold search, and the combined policies."""

import doctest
import math

import numpy as np
import pytest

from tac_jax.metrics import (
    Costs,
    best_threshold,
    disagreement_policy,
    gated_policy,
    selective_value,
    value_at_threshold,
    value_curve,
)
from tac_jax.metrics import value as value_module

SCORES = np.array([0.9, 0.7, 0.4, 0.2])
CORRECT = np.array([1, 0, 1, 0])


def test_value_hand_case():
    # Threshold 0.5 accepts 0.9 (right, +1) and 0.7 (wrong, -3); the others cost c_rej.
    costs = Costs(r=1.0, c_err=3.0, c_rej=0.5)
    assert value_at_threshold(SCORES, CORRECT, 0.5, costs) == pytest.approx((1 - 3 - 0.5 - 0.5) / 4)
    assert value_at_threshold(SCORES, CORRECT, -math.inf, costs) == pytest.approx(-4 / 4)
    assert value_at_threshold(SCORES, CORRECT, math.inf, costs) == pytest.approx(-0.5)
    # A score equal to the threshold is accepted.
    assert value_at_threshold(SCORES, CORRECT, 0.7, costs) == pytest.approx((1 - 3 - 1) / 4)


def test_deferral_hand_case():
    # Rejected 0.4 and 0.2 go to the fallback: right on the first (+1 - 0.2), wrong on the
    # second (-3 - 0.2); c_rej no longer applies.
    costs = Costs(r=1.0, c_err=3.0, c_rej=5.0, c_def=0.2)
    fallback = np.array([0, 0, 1, 0])
    value = value_at_threshold(SCORES, CORRECT, 0.5, costs, fallback_correct=fallback)
    assert value == pytest.approx((1 - 3 + 0.8 - 3.2) / 4)


def test_best_threshold_hand_case():
    # Mean value when accepting the top k (r = 1, c_err = 3): k=0: 0, 1: 1/4, 2: -2/4,
    # 3: -1/4, 4: -4/4.
    threshold, value = best_threshold(SCORES, CORRECT, Costs(c_err=3.0))
    assert (threshold, value) == (0.9, 0.25)
    # c_err = 0.5: accepting the top three (1 - 0.5 + 1) / 4 beats all four (1 / 4).
    assert best_threshold(SCORES, CORRECT, Costs(c_err=0.5)) == (0.4, 0.375)
    # Free errors: top three and all four tie at 2/4; the tie goes to accept-all, as -inf.
    assert best_threshold(SCORES, CORRECT, Costs(c_err=0.0)) == (-math.inf, 0.5)
    # Only wrong answers: reject all.
    threshold, value = best_threshold(SCORES, np.zeros(4, bool))
    assert (threshold, value) == (math.inf, 0.0)


def test_best_threshold_with_ties_and_deferral():
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    correct = np.array([1, 1, 1, 0, 0])
    # The tie group enters whole: +2 - 1 = +1 with c_err = 1, so accept down to 0.5.
    assert best_threshold(scores, correct) == (0.5, pytest.approx(2 / 5))
    # A fallback that is always right at no cost beats accepting anything wrong.
    t, v = best_threshold(scores, correct, Costs(c_def=0.0), fallback_correct=np.ones(5))
    assert t == 0.9 and v == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_best_threshold_is_the_exhaustive_optimum(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=60), 1)
    correct = rng.random(60) < 0.7
    fallback = rng.random(60) < 0.5
    costs = Costs(r=1.0, c_err=2.5, c_rej=0.1, c_def=0.3)
    candidates = np.r_[-np.inf, np.unique(scores), np.inf]
    for fb in (None, fallback):
        values = [value_at_threshold(scores, correct, t, costs, fb) for t in candidates]
        t, v = best_threshold(scores, correct, costs, fb)
        assert v == pytest.approx(max(values))
        assert value_at_threshold(scores, correct, t, costs, fb) == pytest.approx(v)


def test_threshold_chosen_on_val_is_applied_to_test():
    val_scores, val_correct = np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0])
    test_scores = np.array([0.95, 0.85, 0.5, 0.1])
    test_correct = np.array([1, 0, 1, 1])
    out = selective_value(val_scores, val_correct, test_scores, test_correct, Costs(c_err=2.0))
    # Val picks t = 0.8; on test 0.95 (+1) and 0.85 (-2) are accepted, the rest rejected.
    assert out == {
        "threshold": 0.8,
        "value": pytest.approx(-1 / 4),
        "coverage": 0.5,
        "accuracy_accepted": 0.5,
    }
    rejected = selective_value(val_scores, np.zeros(4), test_scores, test_correct)
    assert rejected["coverage"] == 0.0 and math.isnan(rejected["accuracy_accepted"])


def test_selective_value_with_deferral():
    val_scores, val_correct = np.array([0.9, 0.2]), np.array([1, 0])
    val_fb = np.array([1, 1])
    test_scores, test_correct, test_fb = np.array([0.1, 0.95]), np.array([1, 1]), np.array([0, 1])
    out = selective_value(
        val_scores,
        val_correct,
        test_scores,
        test_correct,
        Costs(c_def=0.5),
        val_fallback_correct=val_fb,
        test_fallback_correct=test_fb,
    )
    # Val: accept 0.9 and defer 0.2 (1 + 0.5) beats accepting both (1 - 1).
    assert out["threshold"] == 0.9
    # Test: 0.1 is deferred to a wrong fallback (-1 - 0.5); 0.95 accepted and right (+1).
    assert out["value"] == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="expected"):
        selective_value(
            val_scores,
            val_correct,
            test_scores,
            test_correct,
            Costs(),
            **{"val_fallback_correct": val_fb},
        )


def test_value_curve_follows_the_error_cost():
    val_scores, val_correct = np.array([0.9, 0.5, 0.1]), np.array([1, 0, 1])
    test_scores, test_correct = np.array([0.95, 0.3]), np.array([1, 1])
    curve = value_curve(val_scores, val_correct, test_scores, test_correct, [0.5, 2.0, 10.0])
    np.testing.assert_array_equal(curve["c_err"], [0.5, 2.0, 10.0])
    np.testing.assert_array_equal(curve["threshold"], [-np.inf, 0.9, 0.9])
    np.testing.assert_allclose(curve["value"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(curve["coverage"], [1.0, 0.5, 0.5])


def test_gated_policy_is_selective_value_on_prediction_correctness():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 50))
    pred = np.where(rng.random((2, 50)) < 0.7, labels, (labels + 1) % 4)
    scores = rng.normal(size=(2, 50)) + (pred == labels)
    out = gated_policy(scores[0], pred[0], labels[0], scores[1], pred[1], labels[1])
    ref = selective_value(scores[0], pred[0] == labels[0], scores[1], pred[1] == labels[1])
    assert out == ref


def test_disagreement_policy():
    val_scores = np.array([0.9, 0.8, 0.7, 0.1])
    val_base, val_tac, val_y = (
        np.array([0, 1, 2, 3]),
        np.array([0, 2, 2, 0]),
        np.array([0, 1, 2, 0]),
    )
    test_scores = np.array([0.95, 0.85, 0.75, 0.05])
    test_base, test_tac, test_y = (
        np.array([1, 1, 0, 2]),
        np.array([1, 0, 0, 2]),
        np.array([1, 1, 0, 2]),
    )
    args = (val_scores, val_base, val_tac, val_y, test_scores, test_base, test_tac, test_y)

    tac = disagreement_policy(*args, on_disagreement="tac")
    assert tac == {
        **gated_policy(val_scores, val_tac, val_y, test_scores, test_tac, test_y),
        "disagreement": 0.25,
    }
    # Val under "tac": TAC is wrong on 0.8 only; accepting all gives 2/4, the best, so
    # t = -inf. Test: TAC is wrong on 0.85 only: (3 - 1) / 4.
    assert tac["threshold"] == -math.inf and tac["value"] == pytest.approx(2 / 4)

    rej = disagreement_policy(*args, on_disagreement="reject")
    # Val: disagreeing 0.8 and 0.1 are always rejected; 0.9 and 0.7 agree and are right.
    # Test: 0.85 disagrees and is rejected; the other three agree, are right and accepted.
    assert rej["coverage"] == 0.75 and rej["value"] == pytest.approx(3 / 4)
    assert rej["accuracy_accepted"] == 1.0 and rej["disagreement"] == 0.25
    with pytest.raises(ValueError, match="expected"):
        disagreement_policy(*args, on_disagreement="base")


@pytest.mark.parametrize("field", ["r", "c_err", "c_rej", "c_def"])
def test_costs_validation(field):
    with pytest.raises(ValueError, match="expected"):
        Costs(**{field: -1.0})
    with pytest.raises(ValueError, match="expected"):
        Costs(**{field: math.nan})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="expected"):
        value_at_threshold([0.1, 0.2], [1, 0, 1], 0.0)
    with pytest.raises(ValueError, match="expected"):
        value_at_threshold([0.1, 0.2], [1, 0], 0.0, fallback_correct=[1])
    with pytest.raises(ValueError, match="expected"):
        best_threshold([0.1, np.inf], [1, 0])
    with pytest.raises(ValueError, match="expected"):
        gated_policy([0.1], [0.5], [0], [0.1], [0], [0])
    with pytest.raises(ValueError, match="expected"):
        value_curve([0.1], [1], [0.1], [1], [-1.0])


def test_docstring_examples():
    assert doctest.testmod(value_module).failed == 0
