"""A study written by adaptsearch reads unchanged with the `optuna` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search.config import StudyConfig
from search.study import run_study
from tests.study_support import write_study_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stored_study(tiny_world, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("optuna-cli")
    config = StudyConfig.from_file(write_study_config(folder, tiny_world))
    storage = f"sqlite:///{folder / 'study.db'}"
    run_study(config, trials=2, storage=storage, studies_dir=folder, study_name="shared", seed=0)
    return storage


def _optuna_command() -> list[str]:
    script = Path(sys.executable).with_name("optuna")
    return [str(script)] if script.exists() else [shutil.which("optuna") or "optuna"]


def test_optuna_trials_lists_study(stored_study):
    completed = subprocess.run(
        [*_optuna_command(), "trials", "--study-name", "shared", "--storage", stored_study, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)
    # The optuna CLI lists both trials with their values and the original-settings mark.
    assert len(rows) == 2
    assert all(row["state"] in ("COMPLETE", "PRUNED") for row in rows)
    assert rows[0]["user_attrs"]["origin"] == "original-settings"


def test_optuna_best_trial(stored_study):
    completed = subprocess.run(
        [*_optuna_command(), "best-trial", "--study-name", "shared", "--storage", stored_study, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # optuna's best-trial reads the stored objective value.
    assert completed.returncode == 0, completed.stderr
    assert "value" in json.loads(completed.stdout)
