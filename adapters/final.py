"""Final retraining: train adapters with exported parameters and evaluate once on the target test split.

This is the only code that reads the target test split. A run folder contains everything needed
to reuse or audit the result: the adapter weights and their shapes, the parameters, the
metrics, the diagnostics and the per-epoch history. The same parameters are also trained
with `ORIGINAL_SETTINGS` (the original script's objective and optimiser, with the run's
modalities and seed) on the same data, so the two results can be shown side by side.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adapters.diagnostics import diagnose
from adapters.errors import ConfigError
from adapters.io import atomic_path, make_parent_folder
from adapters.metrics import Metrics, compute_metrics
from adapters.params import ORIGINAL_SETTINGS, RunParams, TrainConfig, dump_yaml
from adapters.pipeline import RunContext, prepare_context
from adapters.trainer import TrainResult, evaluate, train_adapters

__all__ = ["FinalResult", "RunOutcome", "retrain", "train_and_test"]

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """Metrics of one trained configuration.

    Attributes
    ----------
    valid : metrics on the target validation split of the kept epoch (the value a search trial
        with the same parameters reports; when validation rows were trained on, of the last epoch).
    test : metrics on the target test split, computed once after training.
    best_epoch : the kept epoch.
    diagnostics : ``{"valid": ..., "test": ...}`` from `adapters.diagnostics.diagnose`.
    training : the full training result (adapters, history, config).
    """

    valid: Metrics
    test: Metrics
    best_epoch: int
    diagnostics: dict
    training: TrainResult


@dataclass
class FinalResult:
    """Outcome of `retrain`: the tuned run, the original-settings run (or None) and the run folder."""

    tuned: RunOutcome
    original: RunOutcome | None
    run_dir: Path
    include_valid: bool
    source_info: dict

    @property
    def valid_corr(self) -> float | None:
        """Target-validation correlation of the tuned run's kept epoch."""
        return self.tuned.valid.corr


def _tensors(split, modalities) -> dict[str, torch.Tensor]:
    return {m: torch.from_numpy(np.ascontiguousarray(split.features[m], dtype=np.float32)) for m in modalities}


def _warn_if_other_data(params: RunParams, context: RunContext) -> None:
    """Warn when the data differs from the data whose fingerprints the parameter file records."""
    searched = (params.meta or {}).get("fingerprints") or {}
    for role, data in (("source", context.source_data), ("target", context.target_data)):
        recorded = searched.get(role)
        if recorded and recorded != data.fingerprint:
            logger.warning(
                "the %s dataset %s differs from the one these parameters were searched on (fingerprint %s..., now %s...); "
                "its results will not match the search's",
                role, data.name, str(recorded)[:12], data.fingerprint[:12],
            )


def train_and_test(
    context: RunContext, config: TrainConfig, *, include_valid: bool, cache_dir: Path, label: str | None = None
) -> RunOutcome:
    """Train adapters on the target train split (and valid, if `include_valid`) and test them once.

    Without `include_valid` the epoch with the best validation correlation is kept, exactly as
    in a search trial; with it the last epoch is kept because validation is no longer held out.
    """
    train_splits = ("train", "valid") if include_valid else ("train",)
    training = train_adapters(
        context.source_model, context.source_data, context.target_data, config,
        train_splits=train_splits, eval_split="valid", keep="last" if include_valid else "best", cache_dir=cache_dir,
        label=label,
    )

    test_split = context.target_data.splits["test"]
    predictions, adapted = evaluate(training.adapters, context.source_model, _tensors(test_split, config.modalities))
    test_metrics = compute_metrics(predictions, test_split.labels)
    test_diagnostics = diagnose(
        adapted, predictions, test_split.labels, context.source_data, context.target_data, split="test", label=label
    )
    return RunOutcome(
        valid=training.metrics,
        test=test_metrics,
        best_epoch=training.best_epoch,
        diagnostics={"valid": training.diagnostics, "test": test_diagnostics},
        training=training,
    )


def _outcome_dict(outcome: RunOutcome) -> dict:
    return {
        "best_epoch": outcome.best_epoch,
        "valid": outcome.valid.to_dict(),
        "test": outcome.test.to_dict(),
        "config": outcome.training.config.to_dict(),
    }


def _write_run(run_dir: Path, params: RunParams, result: FinalResult) -> None:
    tuned = result.tuned
    with atomic_path(run_dir) as folder:
        folder.mkdir()
        torch.save(
            {
                "state_dict": {m: adapter.state_dict() for m, adapter in tuned.training.adapters.items()},
                "adapter_config": {m: adapter.config for m, adapter in tuned.training.adapters.items()},
                "modalities": list(tuned.training.config.modalities),
            },
            folder / "adapters.pt",
        )
        (folder / "params.yaml").write_text(dump_yaml(params.to_dict()), encoding="utf-8")
        metrics = {
            "include_valid": result.include_valid,
            "tuned": _outcome_dict(tuned),
            "original": _outcome_dict(result.original) if result.original is not None else None,
            "source_model": {key: result.source_info.get(key) for key in ("path", "best_epoch", "valid", "test")},
        }
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        diagnostics = {"tuned": tuned.diagnostics}
        if result.original is not None:
            diagnostics["original"] = result.original.diagnostics
        (folder / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2), encoding="utf-8")
        history = {"tuned": [record.to_dict() for record in tuned.training.history]}
        if result.original is not None:
            history["original"] = [record.to_dict() for record in result.original.training.history]
        (folder / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")


def retrain(
    params: RunParams, studies_dir: Path, out_dir: Path | None = None, *,
    include_valid: bool = False, compare_original: bool = True,
) -> FinalResult:
    """Train with `params`, test once on the target test split and write a run folder.

    Parameters
    ----------
    params : RunParams
    studies_dir : Path
        Studies folder; caches are read from and written to ``studies_dir/cache``.
    out_dir : Path, optional
        Run folder to create; default ``studies_dir/runs/<UTC time>-<objective>``. It must not exist.
    include_valid : bool
        Train on the target train and validation splits and keep the last epoch.
    compare_original : bool
        Also train `ORIGINAL_SETTINGS` (with this run's modalities and seed) the same way.

    Raises
    ------
    ConfigError
        If `out_dir` exists already.
    """
    studies_dir = Path(studies_dir)
    cache_dir = studies_dir / "cache"
    if out_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        out_dir = studies_dir / "runs" / f"{stamp}-{params.train.objective}"
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConfigError(f"run folder {out_dir} already exists; pass another --out")
    # Checked before training, so that a bad --out fails in a second, not after the run.
    make_parent_folder(out_dir)

    context = prepare_context(params.source, params.target, params.source_model, cache_dir, params.train.modalities)
    _warn_if_other_data(params, context)
    logger.info("training adapters (%s) on %s", params.train.objective, context.target_data.name)
    tuned = train_and_test(context, params.train, include_valid=include_valid, cache_dir=cache_dir, label="tuned settings")
    original = None
    if compare_original:
        original_config = ORIGINAL_SETTINGS.replace(modalities=params.train.modalities, seed=params.train.seed)
        logger.info("training adapters with the original settings for comparison")
        original = train_and_test(
            context, original_config, include_valid=include_valid, cache_dir=cache_dir, label="original settings"
        )

    result = FinalResult(tuned, original, out_dir, include_valid, context.source_info)
    _write_run(out_dir, params, result)
    logger.debug("wrote run folder %s", out_dir)
    return result
