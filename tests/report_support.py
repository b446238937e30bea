"""Hand-built studies for the note, artifact and report tests: the attributes the objective stores, no training."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN

MODALITIES = ("visual", "audio", "text")
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-2, log=True),
    "depth": IntDistribution(1, 4),
    "objective": CategoricalDistribution(["prototype-mse", "sinkhorn", "moments"]),
}
PRUNER = {"threshold": 0.0, "warmup_epochs": 3, "median_startup_trials": 5, "median_warmup_epochs": 5, "median_min_trials": 3}


def metrics(corr: float | None) -> dict:
    return {
        "corr": corr,
        "corr_reason": None if corr is not None else "constant predictions",
        "mae": 1.21,
        "mse": 2.05,
        "acc2_nonneg": 0.61,
        "acc2_nonzero": 0.63,
        "f1_nonneg": 0.60,
        "f1_nonzero": 0.62,
        "acc7": 0.22,
        "n": 229,
        "score": corr if corr is not None else -1.0,
    }


def diagnostics(collapsed: bool = False) -> dict:
    spread = 0.01 if collapsed else 0.9
    return {
        "split": "valid",
        "n": 229,
        "features": {
            modality: {
                "adapted": {"mean": 0.1, "std": spread, "min": -2.0, "max": 2.5},
                "source": {"mean": 0.0, "std": 1.0, "min": -3.1, "max": 3.4},
            }
            for modality in MODALITIES
        },
        "predictions": {"mean": 0.2, "std": spread, "min": -1.5, "max": 1.9},
        "labels": {"mean": 0.1, "std": 1.5, "min": -3.0, "max": 3.0},
        "sign_agreement": 0.64,
        "positive_share": {"predictions": 0.55, "labels": 0.52},
        "nonfinite_share": {"visual": 0.001, "audio": 0.0, "text": None},
        "collapsed": collapsed,
        "collapse_ratio": 0.1,
        "warnings": ["predictions collapsed on mosi valid: std 0.0100 is below 0.1 x label std 1.5000"] if collapsed else [],
    }


def history(corrs: list[float], lr: float) -> list[dict]:
    records = []
    for index, corr in enumerate(corrs):
        epoch = index + 1
        records.append(
            {
                "epoch": epoch,
                "valid_corr": corr,
                "losses": {modality: 1.0 / epoch + 0.1 * position for position, modality in enumerate(MODALITIES)},
                "task_loss": None,
                "lr": lr if epoch <= 6 else lr * 0.7,
            }
        )
    return records


def curve(final: float, epochs: int) -> list[float]:
    return [final * (1.0 - math.exp(-(epoch + 1) / 3.0)) for epoch in range(epochs)]


def build_study(
    storage: str,
    *,
    name: str = "hand",
    complete: int = 6,
    pruned: int = 2,
    directions: tuple[str, ...] = ("maximize",),
) -> optuna.Study:
    """Create a study with trial 0 on the original settings, `complete` complete and `pruned` pruned trials."""
    study = optuna.create_study(storage=storage, study_name=name, directions=list(directions))
    study.set_user_attr(
        "adaptsearch",
        {"config": {"pruner": PRUNER, "space": {"parameters": {}}}, "fingerprints": {"source": "abc", "target": "def"}, "version": "0.1"},
    )
    objectives = ["prototype-mse", "sinkhorn", "moments"]
    for index in range(complete):
        final = 0.05 + 0.08 * index
        lr = 10 ** (-4 + 0.25 * (index % 8))
        corrs = curve(final, 10)
        attrs = {
            "metrics": metrics(max(corrs)),
            "diagnostics": diagnostics(collapsed=index == 1),
            "history": history(corrs, lr),
            "best_epoch": 10,
            "seconds": 3.5 + index,
        }
        if index == 0:
            attrs[ORIGIN_ATTR] = ORIGINAL_SETTINGS_ORIGIN
        values = [max(corrs)] if len(directions) == 1 else [max(corrs), 1.3 - 0.02 * index + 0.05 * (index % 2)]
        study.add_trial(
            create_trial(
                params={"lr": lr, "depth": 1 + index % 4, "objective": objectives[index % 3]},
                distributions=DISTRIBUTIONS,
                values=values,
                user_attrs=attrs,
                intermediate_values=dict(enumerate(corrs, start=1)),
            )
        )
    for index in range(pruned):
        corrs = [-0.2 - 0.05 * index, -0.15, -0.12]
        study.add_trial(
            create_trial(
                params={"lr": 3e-3, "depth": 2, "objective": "sinkhorn"},
                distributions=DISTRIBUTIONS,
                state=TrialState.PRUNED,
                user_attrs={
                    "history": history(corrs, 3e-3),
                    "seconds": 1.0,
                    "pruned_rule": "threshold",
                    "pruned_reason": f"valid correlation {corrs[-1]:.4f} at epoch 3 is below the threshold 0, which applies from epoch 3 on",
                },
                intermediate_values=dict(enumerate(corrs, start=1)),
            )
        )
    return study


def wsgi_get(app, path: str) -> tuple[str, bytes]:
    """Send one GET request to a WSGI app in process; return the status line and the body."""
    import io
    from wsgiref.util import setup_testing_defaults

    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(line, headers, exc_info=None):
        status.append(line)

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return status[0], body
