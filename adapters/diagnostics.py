"""Run diagnostics: are the adapted features in the source range, and did the predictions collapse?

The original script's failure showed up as adapted features far from MOSEI's range and as
predictions that were nearly constant or had the wrong sign. These checks make both visible
in every run's result.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["COLLAPSE_RATIO", "diagnose"]

logger = logging.getLogger(__name__)

# Predictions count as collapsed when their standard deviation is below this share of the labels'.
COLLAPSE_RATIO = 0.1


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _nonfinite(data, modalities) -> dict[str, dict]:
    """Read the preparation report's non-finite counts per modality (None where it has none)."""
    report = getattr(data, "report", None) or {}
    return {
        modality: {
            "share": report.get("nonfinite_share", {}).get(modality),
            "values": report.get("nonfinite_values", {}).get(modality),
            "replaced_cells": report.get("nonfinite_replaced", {}).get(modality),
        }
        for modality in modalities
    }


def diagnose(
    adapted: dict[str, np.ndarray],
    predictions: np.ndarray,
    labels: np.ndarray,
    source_data,
    target_data,
    *,
    split: str,
    label: str | None = None,
) -> dict:
    """Compare adapted features and predictions with the source features and the labels.

    Parameters
    ----------
    adapted : dict of modality -> array of shape (n, d_m)
        Adapter outputs on the evaluated target split (source space).
    predictions, labels : arrays of shape (n,)
        Source model output on `adapted` and the target labels.
    source_data, target_data : PreparedData
        The source's normalised training features are the reference; the target's ``report``
        supplies the share of non-finite input values that preparation replaced.
    split : str
        Name of the evaluated target split, stored in the result.
    label : str, optional
        Name of the run (e.g. "original settings"), put before each logged warning so that
        the warnings of two runs in one command name their run.

    Returns
    -------
    dict
        JSON-able: ``features`` per modality (adapted and source mean/std/min/max), ``predictions``
        and ``labels`` summaries, ``sign_agreement`` (share of non-zero labels whose sign the
        prediction matches), ``positive_share`` of predictions and labels, ``nonfinite_share``
        (share of the target's frame values that were non-finite) per modality, ``nonfinite``
        (share, count of non-finite frame values and count of pooled cells filled with the train
        mean, per dataset and modality), ``collapsed`` (prediction std < ``COLLAPSE_RATIO`` x label std) and
        ``warnings`` (sentences).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    features = {
        modality: {
            "adapted": _summary(values),
            "source": _summary(source_data.splits["train"].features[modality]),
        }
        for modality, values in adapted.items()
    }

    prediction_summary = _summary(predictions)
    label_summary = _summary(labels)
    nonzero = labels != 0
    sign_agreement = (
        float(np.mean(np.sign(predictions[nonzero]) == np.sign(labels[nonzero]))) if nonzero.any() else None
    )
    collapsed = prediction_summary["std"] < COLLAPSE_RATIO * label_summary["std"]

    nonfinite = {role: _nonfinite(data, adapted) for role, data in (("source", source_data), ("target", target_data))}
    nonfinite_share = {modality: nonfinite["target"][modality]["share"] for modality in adapted}

    warnings_found = []
    if collapsed:
        warnings_found.append(
            f"predictions collapsed on {target_data.name} {split}: std {prediction_summary['std']:.4f} is below "
            f"{COLLAPSE_RATIO} x label std {label_summary['std']:.4f}"
        )
    if sign_agreement is not None and sign_agreement < 0.5:
        warnings_found.append(
            f"prediction signs agree with only {sign_agreement:.1%} of non-zero labels on {target_data.name} {split}"
        )
    for modality, summary in features.items():
        adapted_std, source_std = summary["adapted"]["std"], summary["source"]["std"]
        if source_std > 0 and adapted_std < COLLAPSE_RATIO * source_std:
            warnings_found.append(
                f"adapted {modality} features collapsed on {target_data.name} {split}: "
                f"std {adapted_std:.4f} against source std {source_std:.4f}"
            )
    for sentence in warnings_found:
        logger.warning("%s%s", f"{label}: " if label else "", sentence)

    return {
        "split": split,
        "n": int(labels.size),
        "features": features,
        "predictions": prediction_summary,
        "labels": label_summary,
        "sign_agreement": sign_agreement,
        "positive_share": {
            "predictions": float(np.mean(predictions > 0)),
            "labels": float(np.mean(labels > 0)),
        },
        "nonfinite_share": nonfinite_share,
        "nonfinite": nonfinite,
        "collapsed": bool(collapsed),
        "collapse_ratio": COLLAPSE_RATIO,
        "warnings": warnings_found,
    }
