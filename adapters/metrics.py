"""Regression and classification metrics for sentiment predictions in [-3, 3].

The field reports MOSI results as Pearson r, MAE, binary accuracy and weighted F1 in two
variants, and 7-class accuracy. Binary "non-negative" splits labels into negative (< 0)
and non-negative (>= 0); binary "non-zero" drops segments whose label is exactly 0 and
splits the rest into negative and positive.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Metrics", "compute_metrics"]


@dataclass(frozen=True)
class Metrics:
    """Metrics of one prediction vector against its labels.

    ``corr`` is None when Pearson r is undefined (constant predictions or constant labels);
    ``corr_reason`` then names the cause. Binary metrics on the non-zero subset are None when
    every label is zero.
    """

    corr: float | None
    corr_reason: str | None
    mae: float
    mse: float
    acc2_nonneg: float
    acc2_nonzero: float | None
    f1_nonneg: float
    f1_nonzero: float | None
    acc7: float
    n: int

    @property
    def score(self) -> float:
        """Pearson r, or -1.0 when it is undefined, so a degenerate run never sorts as best."""
        return self.corr if self.corr is not None else -1.0

    def to_dict(self) -> dict:
        """Return the fields as a JSON-able dict, with ``score`` added."""
        values = asdict(self)
        values["score"] = self.score
        return values

    @classmethod
    def from_dict(cls, values: dict) -> Metrics:
        """Build metrics from :meth:`to_dict` output (``score`` is derived and ignored)."""
        return cls(**{key: value for key, value in values.items() if key != "score"})


def _pearson(pred: np.ndarray, labels: np.ndarray) -> tuple[float | None, str | None]:
    # Centre in float64 so that a constant vector gives exactly zero spread, not rounding noise.
    pred_centred = pred - pred.mean()
    labels_centred = labels - labels.mean()
    pred_norm = math.sqrt(float(np.dot(pred_centred, pred_centred)))
    labels_norm = math.sqrt(float(np.dot(labels_centred, labels_centred)))
    if pred_norm == 0.0:
        return None, "constant predictions"
    if labels_norm == 0.0:
        return None, "constant labels"
    r = float(np.dot(pred_centred, labels_centred)) / (pred_norm * labels_norm)
    return max(-1.0, min(1.0, r)), None


def _diverged(n: int, n_bad: int) -> Metrics:
    return Metrics(
        corr=None,
        corr_reason=f"non-finite predictions ({n_bad} of {n}); training diverged",
        mae=math.inf,
        mse=math.inf,
        acc2_nonneg=0.0,
        acc2_nonzero=0.0,
        f1_nonneg=0.0,
        f1_nonzero=0.0,
        acc7=0.0,
        n=n,
    )


def weighted_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    """Binary F1 per class, averaged with the classes' label counts as weights.

    The definition of scikit-learn's ``f1_score(labels, pred, average="weighted",
    zero_division=0)`` for boolean arrays, in a few numpy reductions: the metrics run after
    every epoch, and scikit-learn's input checks took longer than the rest of the evaluation.
    """
    n = labels.size
    total = 0.0
    for positive_labels, positive_pred in ((labels, pred), (~labels, ~pred)):
        support = int(np.count_nonzero(positive_labels))
        if support == 0:
            continue
        true_pos = int(np.count_nonzero(positive_labels & positive_pred))
        false_pos = int(np.count_nonzero(positive_pred)) - true_pos
        false_neg = support - true_pos
        denominator = 2 * true_pos + false_pos + false_neg
        total += support * (2 * true_pos / denominator if denominator else 0.0)
    return total / n


def compute_metrics(pred: np.ndarray, labels: np.ndarray) -> Metrics:
    """Compute the MOSI metric set.

    Parameters
    ----------
    pred : array of shape (n,)
        Predicted sentiment, any real values (clipped to [-3, 3] only for Acc-7).
    labels : array of shape (n,)
        Gold sentiment in [-3, 3].

    Returns
    -------
    Metrics
        Never NaN: an undefined correlation is None with a reason. Non-finite predictions
        (a run whose training diverged) give a degenerate result: corr None with the reason,
        MAE and MSE infinite, accuracies and F1 0.

    Raises
    ------
    ValueError
        If the shapes differ, the arrays are empty or the labels contain non-finite values.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if pred.shape != labels.shape:
        raise ValueError(f"predictions have shape {pred.shape} but labels have shape {labels.shape}")
    if pred.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.isfinite(labels).all():
        raise ValueError("labels contain NaN or infinite values")
    if not np.isfinite(pred).all():
        return _diverged(int(pred.size), int(np.count_nonzero(~np.isfinite(pred))))

    corr, corr_reason = _pearson(pred, labels)
    error = pred - labels

    pred_nonneg = pred >= 0
    labels_nonneg = labels >= 0
    acc2_nonneg = float(np.mean(pred_nonneg == labels_nonneg))
    f1_nonneg = weighted_f1(labels_nonneg, pred_nonneg)

    nonzero = labels != 0
    if nonzero.any():
        pred_pos = pred[nonzero] > 0
        labels_pos = labels[nonzero] > 0
        acc2_nonzero: float | None = float(np.mean(pred_pos == labels_pos))
        f1_nonzero: float | None = weighted_f1(labels_pos, pred_pos)
    else:
        acc2_nonzero = None
        f1_nonzero = None

    pred7 = np.round(np.clip(pred, -3.0, 3.0))
    labels7 = np.round(np.clip(labels, -3.0, 3.0))
    acc7 = float(np.mean(pred7 == labels7))

    return Metrics(
        corr=corr,
        corr_reason=corr_reason,
        mae=float(np.mean(np.abs(error))),
        mse=float(np.mean(error**2)),
        acc2_nonneg=acc2_nonneg,
        acc2_nonzero=acc2_nonzero,
        f1_nonneg=f1_nonneg,
        f1_nonzero=f1_nonzero,
        acc7=acc7,
        n=int(pred.size),
    )
