import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from adapters.metrics import Metrics, compute_metrics, weighted_f1


def test_metrics_hand_computed():
    pred = np.array([1.0, -1.0, 2.0, 0.0])
    labels = np.array([2.0, -2.0, 1.0, 0.0])
    metrics = compute_metrics(pred, labels)

    # r = cov / (sd sd): centred pred [0.5,-1.5,1.5,-0.5], labels [1.75,-2.25,0.75,-0.25].
    expected_r = (0.875 + 3.375 + 1.125 + 0.125) / math.sqrt(5.0 * 8.75)
    assert metrics.corr == pytest.approx(expected_r)
    assert metrics.corr_reason is None
    assert metrics.mae == pytest.approx(0.75)
    assert metrics.mse == pytest.approx(0.75)
    # Every sign matches, zero label with zero prediction counts as non-negative in both.
    assert metrics.acc2_nonneg == 1.0
    assert metrics.acc2_nonzero == 1.0
    assert metrics.f1_nonneg == 1.0
    # Rounded classes: pred [1,-1,2,0], labels [2,-2,1,0]: one of four equal.
    assert metrics.acc7 == 0.25
    assert metrics.n == 4


def test_metrics_zero_labels_excluded_from_nonzero():
    pred = np.array([0.5, 0.5, -0.5, 0.2])
    labels = np.array([0.0, 1.0, -1.0, -1.0])
    metrics = compute_metrics(pred, labels)

    # Non-negative split: truths [T,T,F,F], preds [T,T,F,T] -> 3/4.
    assert metrics.acc2_nonneg == 0.75
    # Non-zero split drops the first row: truths [T,F,F], preds [T,F,T] -> 2/3.
    assert metrics.acc2_nonzero == pytest.approx(2 / 3)
    # Weighted F1 on [T,F,F] vs [T,F,T]: class T f1 2/3 (w 1/3), class F f1 2/3 (w 2/3).
    assert metrics.f1_nonzero == pytest.approx(2 / 3)
    assert metrics.f1_nonneg == pytest.approx(0.7333333333)


def test_metrics_all_zero_labels():
    metrics = compute_metrics(np.array([0.1, -0.2]), np.array([0.0, 0.0]))

    # Constant labels leave r undefined and no non-zero rows for the second binary variant.
    assert metrics.corr is None
    assert metrics.corr_reason == "constant labels"
    assert metrics.acc2_nonzero is None
    assert metrics.f1_nonzero is None
    assert metrics.score == -1.0


def test_metrics_constant_predictions():
    metrics = compute_metrics(np.full(5, 0.3), np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))

    assert metrics.corr is None
    assert metrics.corr_reason == "constant predictions"
    assert metrics.score == -1.0
    # No field is NaN.
    for value in metrics.to_dict().values():
        assert not (isinstance(value, float) and math.isnan(value))


def test_metrics_acc7_clips_to_range():
    metrics = compute_metrics(np.array([4.2, -3.6, 2.4]), np.array([3.0, -3.0, 2.6]))

    # 4.2 and -3.6 clip to 3 and -3; 2.4 rounds to 2 but 2.6 rounds to 3.
    assert metrics.acc7 == pytest.approx(2 / 3)


def test_metrics_roundtrip_and_score():
    metrics = compute_metrics(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))

    assert metrics.corr == pytest.approx(-1.0)
    assert metrics.score == pytest.approx(-1.0)
    assert Metrics.from_dict(metrics.to_dict()) == metrics


@pytest.mark.parametrize(
    "pred, labels",
    [(np.array([1.0, 2.0]), np.array([1.0])), (np.array([]), np.array([])), (np.array([1.0]), np.array([np.nan]))],
)
def test_metrics_rejects_bad_input(pred, labels):
    with pytest.raises(ValueError):
        compute_metrics(pred, labels)


def test_metrics_nonfinite_predictions_degenerate():
    metrics = compute_metrics(np.array([0.5, np.nan, np.inf]), np.array([1.0, -1.0, 2.0]))

    # Predictions of a diverged run give an undefined correlation with its reason, not an error.
    assert metrics.corr is None
    assert "non-finite predictions (2 of 3)" in metrics.corr_reason
    # The score sorts the run last.
    assert metrics.score == -1.0
    # Error metrics are infinite rather than NaN.
    assert metrics.mae == float("inf")
    assert metrics.acc2_nonneg == 0.0


@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60),
)
@settings(max_examples=200, deadline=None)
def test_weighted_f1_matches_scikit_learn(pairs):
    labels = np.array([label for label, _ in pairs])
    pred = np.array([prediction for _, prediction in pairs])

    expected = f1_score(labels, pred, average="weighted", zero_division=0)

    assert weighted_f1(labels, pred) == pytest.approx(expected, abs=1e-12)
