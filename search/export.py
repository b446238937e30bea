"""Reading finished studies: the best trials, and their export as a ``params.yaml`` file.

The export is a `RunParams` file (adapters/params.py): both dataset sections, the source
model config, the trial's full `TrainConfig` (sampled and fixed values), and ``meta`` with the
study and trial, the trial's metrics, the data fingerprints and the adaptsearch version.
``adaptsearch train --params`` reads it unchanged.

In a multi-objective study (correlation up, MAE down) the best trials are the Pareto front,
and the trial exported by default is the one on the front with the highest correlation.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from adapters.datasets import DatasetConfig
from adapters.errors import ConfigError, StudyError
from adapters.params import RunParams, SourceModelConfig, TrainConfig, dump_params
from search import __version__
from search.objective import EVAL_SPLIT, METRIC_NAME, ORIGIN_ATTR, TRAIN_CONFIG_ATTR
from search.storage import check_study_exists, open_storage, redact_url
from search.study import STUDY_ATTR


@dataclass(frozen=True)
class TrialRow:
    """One line of the best-trials table."""

    number: int
    value: float
    best_epoch: int | None
    seconds: float | None
    origin: str | None
    params: dict[str, Any]
    # All objective values in the study's metric order; `value` is the first (the correlation).
    values: tuple[float, ...] = ()


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """Open an existing study for reading.

    Raises
    ------
    StudyError
        If the URL is invalid, the database is missing or contains no study of that name.
    """
    storage = open_storage(storage_url, create=False, heartbeat_interval=None)
    check_study_exists(storage, study_name, storage_url)
    return optuna.load_study(study_name=study_name, storage=storage)


def is_multi_objective(study: optuna.Study) -> bool:
    """True when `study` optimises more than one objective."""
    return len(study.directions) > 1


def best_trials(study: optuna.Study, top: int = 5) -> list[FrozenTrial]:
    """Return the `top` COMPLETE trials by value, best first (ties: lower trial number first).

    In a multi-objective study, return the whole Pareto front (`top` does not cut it), by
    correlation from highest to lowest.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be an integer >= 1, got {top!r}")
    if is_multi_objective(study):
        return sorted(study.best_trials, key=_pareto_rank)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda trial: (-trial.value, trial.number))
    return ranked[:top]


def _pareto_rank(trial: FrozenTrial) -> tuple[float, float, int]:
    # Highest correlation first; on a tie the lower MAE, then the lower trial number.
    return (-trial.values[0], trial.values[1], trial.number)


def trial_rows(trials: list[FrozenTrial]) -> list[TrialRow]:
    return [
        TrialRow(
            number=trial.number,
            value=trial.values[0],
            best_epoch=trial.user_attrs.get("best_epoch"),
            seconds=trial.user_attrs.get("seconds"),
            origin=trial.user_attrs.get(ORIGIN_ATTR),
            params=dict(trial.params),
            values=tuple(trial.values),
        )
        for trial in trials
    ]


def pick_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Return trial `number`, or the best COMPLETE trial when `number` is None.

    In a multi-objective study the best trial is the Pareto-front trial with the highest
    correlation (on a tie, the lower MAE).

    Raises
    ------
    StudyError
        If the study has no complete trial, or trial `number` is missing or not COMPLETE.
    """
    if number is None:
        ranked = best_trials(study, top=1)
        if not ranked:
            raise StudyError(f"study {study.study_name!r} has no complete trial yet; run 'adaptsearch run' first")
        return ranked[0]
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StudyError(f"study {study.study_name!r} has no trial {number} (it has {len(trials)}); pass --trial N")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        raise StudyError(f"trial {number} of study {study.study_name!r} is {trial.state.name}, not COMPLETE; pick another")
    return trial


def run_params(study: optuna.Study, trial: FrozenTrial, storage_url: str) -> RunParams:
    """Build the `RunParams` of `trial`: stored study config plus the trial's full TrainConfig.

    Raises
    ------
    StudyError
        If the study or trial lacks the attributes adaptsearch stores (another tool's study).
    """
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None or TRAIN_CONFIG_ATTR not in trial.user_attrs:
        raise StudyError(
            f"study {study.study_name!r} was not created by 'adaptsearch run' (no stored config); "
            "export works only on adaptsearch studies"
        )
    config = stored["config"]
    # Stored dataset folders are absolute, so the base folder is never used.
    root = Path("/")
    meta = {
        "study": study.study_name,
        "storage": redact_url(storage_url),
        "trial": trial.number,
        "objective": f"{METRIC_NAME} (MOSI {EVAL_SPLIT} Pearson r of the best epoch)",
        "value": trial.values[0],
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "metrics": trial.user_attrs.get("metrics"),
        "params": dict(trial.params),
        "fingerprints": dict(stored["fingerprints"]),
        # "original-settings" for trial 0's queued settings, "sampled" for the sampler's.
        "origin": trial.user_attrs.get(ORIGIN_ATTR) or "sampled",
        "adaptsearch_version": __version__,
        "study_version": stored.get("version"),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if is_multi_objective(study):
        names = study.metric_names or [f"objective {index}" for index in range(len(trial.values))]
        meta["values"] = dict(zip(names, trial.values))
        meta["pareto_optimal"] = trial.number in {front.number for front in study.best_trials}
    return RunParams(
        source=DatasetConfig.from_dict(config["source"], root),
        target=DatasetConfig.from_dict(config["target"], root),
        source_model=SourceModelConfig.from_dict(config["source_model"], root),
        train=TrainConfig.from_dict(trial.user_attrs[TRAIN_CONFIG_ATTR]),
        meta=meta,
    )


def check_export_path(path: str | Path, *, force: bool) -> Path:
    """Return `path` as a Path, raising `ConfigError` if the file exists and `force` is False."""
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it or choose another --export path")
    return path


def export_params(
    study: optuna.Study, path: str | Path, *, storage_url: str, trial_number: int | None = None, force: bool = False
) -> tuple[Path, FrozenTrial]:
    """Write the `RunParams` of the best trial (or trial `trial_number`) to `path` atomically.

    Raises
    ------
    ConfigError
        If `path` exists and `force` is False.
    """
    path = check_export_path(path, force=force)
    trial = pick_trial(study, trial_number)
    dump_params(run_params(study, trial, storage_url), path, force=force)
    return path, trial
