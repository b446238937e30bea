"""The Optuna objective: one trial trains the adapters once with sampled settings.

The value of a trial is the MOSI-valid Pearson correlation of its best epoch (`Metrics.score`,
-1.0 when the correlation is undefined), averaged over the trial's seeds. A multi-objective
study (``objectives: [valid_corr, valid_mae]``) also returns the MOSI-valid MAE of the same
epochs, averaged the same way. MOSI test is never evaluated during the search.
In a single-objective study each epoch reports its MOSI-valid score to the pruner; Optuna
takes no intermediate values from multi-objective trials. The trial's metrics, diagnostics
and per-epoch history are stored as JSON-able user attributes either way.

The source model is trained on the trial's modalities, so the objective keeps one prepared
context per modality subset. `adapters.source` caches each model on disk, so a subset's model
is trained once per cache folder, by whichever trial or worker needs it first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from adapters.params import TrainConfig
from adapters.trainer import EpochRecord, train_adapters
from search.config import CORR_OBJECTIVE, StudyConfig

logger = logging.getLogger(__name__)

METRIC_NAME = CORR_OBJECTIVE
EVAL_SPLIT = "valid"

# Trial user attributes written by the objective.
ORIGIN_ATTR = "origin"
ORIGINAL_SETTINGS_ORIGIN = "original-settings"
TRAIN_CONFIG_ATTR = "train_config"
DEGENERATE_ATTR = "degenerate_reason"
SEED_SCORES_ATTR = "seed_scores"
SEED_STD_ATTR = "seed_score_std"
SEED_MAES_ATTR = "seed_maes"

EpochHook = Callable[[int, EpochRecord, int], None]


class Objective:
    """Callable objective over a prepared context, shared by all trials of one process.

    Parameters
    ----------
    config : StudyConfig
        Data, source model, fixed settings and search space of the study.
    cache_dir : Path
        Cache root for prepared data, the source model and prototypes.
    on_epoch : callable or None
        Called as ``on_epoch(trial_number, record, epochs)`` after each epoch (progress display).
    artifact_store : optuna ArtifactStore or None
        Where the adapters of complete trials are stored; None stores none.
    keep_adapters : int or None
        Keep the adapters of only this many best complete trials; None keeps all.
    """

    def __init__(
        self,
        config: StudyConfig,
        cache_dir: Path,
        *,
        on_epoch: EpochHook | None = None,
        artifact_store=None,
        keep_adapters: int | None = None,
    ) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.on_epoch = on_epoch
        self.artifact_store = artifact_store
        self.keep_adapters = keep_adapters
        self.current_trial_id: int | None = None
        self._context = None
        self._subset_contexts: dict[tuple[str, ...], Any] = {}

    @property
    def context(self):
        """The prepared data and the source model of the base modalities (`adapters.pipeline.RunContext`).

        Built on first use; the base modalities are those of `StudyConfig.base_train_config`.
        """
        if self._context is None:
            from adapters.pipeline import prepare_context

            started = time.perf_counter()
            self._context = prepare_context(
                self.config.source,
                self.config.target,
                self.config.source_model,
                self.cache_dir,
                modalities=self.config.base_train_config().modalities,
            )
            self._subset_contexts[self._context.modalities] = self._context
            logger.info("prepared data and source model in %.1f s", time.perf_counter() - started)
        return self._context

    def context_for(self, modalities: tuple[str, ...]):
        """Return the context whose source model takes `modalities`, loading or training it once.

        The prepared datasets are shared with the base context; only the source model differs.
        """
        modalities = tuple(modalities)
        base = self.context
        if modalities not in self._subset_contexts:
            from adapters.pipeline import RunContext
            from adapters.source import load_or_train_source

            started = time.perf_counter()
            model, info = load_or_train_source(self.config.source_model, base.source_data, self.cache_dir, modalities)
            self._subset_contexts[modalities] = RunContext(base.source_data, base.target_data, model, info, modalities)
            logger.info(
                "%s the source model on %s in %.1f s",
                "trained" if info.get("trained") else "loaded",
                "+".join(modalities),
                time.perf_counter() - started,
            )
        return self._subset_contexts[modalities]

    def fingerprints(self) -> dict[str, str]:
        """Return the fingerprints of the prepared source and target data."""
        return {
            "source": self.context.source_data.fingerprint,
            "target": self.context.target_data.fingerprint,
        }

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        self.current_trial_id = trial._trial_id
        # The original-settings trial is never pruned, so that the study keeps the full result
        # of the settings the search starts from. It still reports every epoch. Multi-objective
        # trials are never pruned and report nothing, because Optuna supports neither for them.
        multi = self.config.multi_objective
        may_prune = not multi and trial.user_attrs.get(ORIGIN_ATTR) != ORIGINAL_SETTINGS_ORIGIN
        base = self.config.base_train_config()
        train_config = self.config.train_config(self.config.space.suggest(trial, objective=base.objective))
        trial.set_user_attr(TRAIN_CONFIG_ATTR, jsonable(train_config.to_dict()))
        context = self.context_for(train_config.modalities)

        started = time.perf_counter()
        history: list[dict[str, Any]] = []
        best_epoch: dict[str, Any] = {}
        scores: list[float] = []
        results = []
        # Each seed is a full training run. Only the first seed reports to the pruner, so that
        # pruning compares the same epochs across trials.
        for offset in range(train_config.seeds):
            seed_config = train_config.replace(seed=train_config.seed + offset)
            callback = (
                self._make_callback(trial, seed_config, history, best_epoch, may_prune, report_epochs=not multi)
                if offset == 0
                else None
            )
            try:
                result = train_adapters(
                    context.source_model,
                    context.source_data,
                    context.target_data,
                    seed_config,
                    train_splits=("train",),
                    eval_split=EVAL_SPLIT,
                    callback=callback,
                    cache_dir=self.cache_dir,
                    label=f"trial {trial.number}",
                )
            except optuna.TrialPruned:
                trial.set_user_attr("history", history)
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
                # The metrics of the best epoch before pruning are stored for the trial's note.
                # Diagnostics are left out because they are computed only when training finishes.
                if best_epoch:
                    trial.set_user_attr("best_epoch", best_epoch["epoch"])
                    trial.set_user_attr("metrics", jsonable(best_epoch["metrics"].to_dict()))
                raise
            results.append(result)
            scores.append(_finite_score(result.metrics.score))

        value = float(np.mean(scores))
        mae = float(np.mean([_finite_mae(result.metrics.mae) for result in results]))
        self._store_result(trial, results, history, value, time.perf_counter() - started)
        if self.artifact_store is not None:
            # Only here are the trained weights still in memory.
            from search.artifacts import upload_adapters

            upload_adapters(
                trial.study,
                trial,
                results[0].adapters,
                results[0].config,
                self.artifact_store,
                keep_top=self.keep_adapters,
                value=value,
            )
        if multi:
            return value, mae
        return value

    def _make_callback(
        self,
        trial: optuna.Trial,
        config: TrainConfig,
        history: list,
        best_epoch: dict,
        may_prune: bool,
        *,
        report_epochs: bool = True,
    ) -> Callable[[EpochRecord], None]:
        """Return the epoch callback: appends to `history`, keeps the best epoch's metrics in `best_epoch`."""
        def report(record: EpochRecord) -> None:
            score = _finite_score(record.metrics.score)
            history.append(
                {
                    "epoch": record.epoch,
                    METRIC_NAME: score,
                    "losses": jsonable(record.losses),
                    "task_loss": jsonable(record.task_loss),
                    "lr": jsonable(record.lr),
                }
            )
            if score > best_epoch.get(METRIC_NAME, -math.inf):
                best_epoch.update({"epoch": record.epoch, METRIC_NAME: score, "metrics": record.metrics})
            if report_epochs:
                trial.report(score, record.epoch)
            if self.on_epoch is not None:
                self.on_epoch(trial.number, record, config.epochs)
            if may_prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record.epoch} with {METRIC_NAME} {score:.4f}")

        return report

    @staticmethod
    def _store_result(trial: optuna.Trial, results: list, history: list, value: float, seconds: float) -> None:
        first = results[0]
        trial.set_user_attr("history", history)
        trial.set_user_attr("seconds", round(seconds, 3))
        trial.set_user_attr("best_epoch", first.best_epoch)
        trial.set_user_attr("metrics", jsonable(first.metrics.to_dict()))
        trial.set_user_attr("diagnostics", jsonable(first.diagnostics))
        if len(results) > 1:
            seed_scores = [_finite_score(result.metrics.score) for result in results]
            trial.set_user_attr(SEED_SCORES_ATTR, seed_scores)
            # Sample standard deviation (ddof=1): the spread of the score between seeds.
            trial.set_user_attr(SEED_STD_ATTR, float(np.std(seed_scores, ddof=1)))
            trial.set_user_attr(SEED_MAES_ATTR, jsonable([_finite_mae(result.metrics.mae) for result in results]))
        reasons = sorted({result.metrics.corr_reason for result in results if result.metrics.corr is None})
        if reasons:
            # Metrics.score is -1.0 for an undefined correlation, and this attribute stores why.
            trial.set_user_attr(DEGENERATE_ATTR, "; ".join(str(reason) for reason in reasons))
        logger.debug("trial %d: %s %.4f at epoch %d", trial.number, METRIC_NAME, value, first.best_epoch)


def _finite_score(score: float | None) -> float:
    """Return `score`, or -1.0 (the worst correlation) when it is None or not finite."""
    if score is None or not math.isfinite(score):
        return -1.0
    return float(score)


def _finite_mae(mae: float | None) -> float:
    """Return `mae`, or infinity (the worst MAE) when it is None or not finite."""
    if mae is None or not math.isfinite(mae):
        return math.inf
    return float(mae)


def jsonable(value: Any) -> Any:
    """Return `value` with numpy scalars and arrays as Python types and non-finite floats as None.

    Optuna stores user attributes as JSON; NaN would be written as a bare ``NaN`` token that
    the dashboard's JSON parser rejects.
    """
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
