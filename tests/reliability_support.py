"""Helpers for the reliability tests: quick study configs, worker subprocesses, trial counts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]

# One epoch of a small adapter on 64 prototype samples: a trial costs about 0.2 s of one core,
# so a hundred trials fit a CI budget. The threshold rule is off (-1) so that no trial is pruned
# and the counts below depend only on the number of trials asked for.
QUICK_SPACE = {
    "parameters": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "n_clusters": {"type": "int", "low": 2, "high": 4},
        "epochs": {"fixed": 1},
        "hidden": {"fixed": 8},
        "batch_size": {"fixed": 64},
        "prototype_samples": {"fixed": 64},
    }
}
NO_PRUNING = {"threshold": -1.0, "median_startup_trials": 1000}
QUICK_SOURCE_MODEL = {"epochs": 2, "hidden": 8, "fusion_hidden": 8}


def write_quick_config(folder: Path, world: dict, *, epochs: int = 1) -> Path:
    """Write a study config over `world` whose trials take a fraction of a second; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    space = yaml.safe_load(yaml.safe_dump(QUICK_SPACE))
    space["parameters"]["epochs"] = {"fixed": epochs}
    document = {
        "source": world["source"].to_dict(),
        "target": world["target"].to_dict(),
        "source_model": QUICK_SOURCE_MODEL,
        "space": space,
        "pruner": NO_PRUNING,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def worker_env() -> dict[str, str]:
    """Return the environment for CLI subprocesses: one torch thread each, repository importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def cli_command(*args: str) -> list[str]:
    """Return the argv that runs ``adaptsearch ARGS`` with this interpreter."""
    return [sys.executable, "-c", "from search.cli import main; main()", *args]


def start_cli(args: list[str], *, cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``adaptsearch ARGS`` in a new process group, with stdout and stderr in `log`."""
    stream = open(log, "ab")  # noqa: SIM115 - the child keeps writing after this returns
    try:
        return subprocess.Popen(
            cli_command(*args), cwd=cwd, env=worker_env(), stdout=stream, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        stream.close()


def trial_census(storage: str, study_name: str = "adaptsearch") -> tuple[Counter, list[optuna.trial.FrozenTrial]]:
    """Return the trial count per state name and the trials of a stored study."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    return Counter(trial.state.name for trial in trials), trials


def wait_for_running_trial(storage: str, process, *, study_name: str = "adaptsearch", timeout: float = 120.0) -> int:
    """Wait until the study has a RUNNING trial and return its number.

    Fails the calling test when `process` exits first or `timeout` seconds pass.
    """
    import time

    import pytest
    from optuna.trial import TrialState
    from sqlalchemy.exc import SQLAlchemyError

    from search.storage import sqlite_path

    deadline = time.monotonic() + timeout
    study = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the search exited with code {process.returncode} before a trial started")
        database = sqlite_path(storage)
        if study is None and (database is None or database.is_file()):
            try:
                # No table creation, so that the probe never races the worker's own set-up.
                rdb = optuna.storages.RDBStorage(storage, skip_table_creation=True)
                study = optuna.load_study(study_name=study_name, storage=rdb)
            except (KeyError, SQLAlchemyError, optuna.exceptions.StorageInternalError):
                study = None
        if study is not None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running:
                return running[0].number
        time.sleep(0.1)
    pytest.fail(f"no trial was RUNNING within {timeout} s")
