"""`best --export` then `train --params` repeats the trial's MOSI-valid correlation."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from typer.testing import CliRunner

from search.cli import app
from tests.study_support import write_study_config

torch.set_num_threads(1)
runner = CliRunner()


def test_exported_trial_reproduces(tiny_world, tmp_path):
    config = write_study_config(tmp_path, tiny_world)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    studies = tmp_path / "studies"
    searched = runner.invoke(
        app, ["run", "--config", str(config), "--trials", "2", "--seed", "0", "--storage", storage, "--studies-dir", str(studies)]
    )
    assert searched.exit_code == 0, searched.output

    exported = runner.invoke(app, ["best", "--storage", storage, "--export", str(tmp_path / "params.yaml")])
    assert exported.exit_code == 0, exported.output
    trained = runner.invoke(
        app,
        ["train", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "run"),
         "--studies-dir", str(studies), "--no-compare-original"],
    )
    assert trained.exit_code == 0, trained.output

    study = optuna.load_study(study_name="adaptsearch", storage=storage)
    best = study.best_trial
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Retraining the exported parameters gives the trial's MOSI-valid correlation to 1e-6.
    assert metrics["tuned"]["valid"]["corr"] == pytest.approx(best.value, abs=1e-6)
    # ... and keeps the same best epoch.
    assert metrics["tuned"]["best_epoch"] == best.user_attrs["best_epoch"]
    # The command output states the match too.
    assert f"reproduces trial {best.number}'s {best.value:.6f}" in " ".join(trained.output.split())


def test_reproduction_line_cases():
    from types import SimpleNamespace

    from search.commands.train import reproduction_line

    def result(corr, include_valid=False):
        return SimpleNamespace(include_valid=include_valid, tuned=SimpleNamespace(valid=SimpleNamespace(corr=corr)))

    assert "reproduces trial 4's 0.500000" in reproduction_line({"value": 0.5, "trial": 4}, result(0.5000004))
    assert "differs from trial 4's 0.500000 by 1.0e-03" in reproduction_line({"value": 0.5, "trial": 4}, result(0.501))
    # Not comparable: trained on valid too, a multi-objective export, an undefined correlation.
    assert reproduction_line({"value": 0.5, "trial": 4}, result(0.5, include_valid=True)) is None
    assert reproduction_line({"values": [0.5, 0.9], "trial": 4}, result(0.5)) is None
    assert reproduction_line({"value": 0.5, "trial": 4}, result(None)) is None
