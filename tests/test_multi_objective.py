"""Multi-objective studies (valid_corr up, valid_mae down) on the tiny world."""

from __future__ import annotations

import logging

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from adapters.errors import ConfigError, StudyError
from search.cli import app
from search.config import MULTI_OBJECTIVE, StudyConfig
from search.export import best_trials, pick_trial
from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN
from search.report import build_report
from search.study import run_study
from tests.study_support import write_study_config

torch.set_num_threads(1)
runner = CliRunner()

# A pruner that would prune every trial after its first epoch, if pruning were on.
ALWAYS_PRUNE = {"threshold": 1.0, "warmup_epochs": 0}


@pytest.fixture(scope="module")
def multi_study(tiny_world, tmp_path_factory):
    """Run `adaptsearch run --multi-objective --trials 3` once; return (folder, storage URL, CLI result)."""
    folder = tmp_path_factory.mktemp("multi")
    config = write_study_config(folder, tiny_world, pruner=ALWAYS_PRUNE)
    storage = f"sqlite:///{folder / 'study.db'}"
    result = runner.invoke(
        app,
        ["run", "--config", str(config), "--trials", "3", "--seed", "0", "--multi-objective",
         "--storage", storage, "--studies-dir", str(folder / "studies")],
    )
    assert result.exit_code == 0, result.output
    return folder, storage, result


def _load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="adaptsearch", storage=storage)


def test_three_trials_have_two_values(multi_study):
    _, storage, _ = multi_study
    study = _load(storage)

    # The study maximises the correlation and minimises the MAE, under those names.
    assert [direction.name for direction in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["valid_corr", "valid_mae"]
    # All three trials completed: a pruner that prunes everything was switched off.
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 3
    for trial in study.trials:
        # Each trial has a correlation and a non-negative MAE.
        assert len(trial.values) == 2
        assert trial.values[1] >= 0.0
        # The correlation is the best epoch's, as in a single-objective study.
        assert trial.values[0] == pytest.approx(max(entry["valid_corr"] for entry in trial.user_attrs["history"]))
        # The MAE is that of the same epoch.
        assert trial.values[1] == pytest.approx(trial.user_attrs["metrics"]["mae"])


def test_same_pruner_prunes_single_objective(tiny_world, tmp_path):
    config = StudyConfig.from_file(write_study_config(tmp_path / "config", tiny_world, pruner=ALWAYS_PRUNE))
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    run_study(config, trials=3, storage=storage, studies_dir=tmp_path / "studies", seed=0)

    # Without --multi-objective the pruner prunes every trial but the original-settings one,
    # so the COMPLETE trials of the multi-objective study show that pruning was off.
    states = [trial.state for trial in _load(storage).trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]


def test_trial_zero_is_original(multi_study):
    _, storage, _ = multi_study
    assert _load(storage).trials[0].user_attrs[ORIGIN_ATTR] == ORIGINAL_SETTINGS_ORIGIN


def test_summary_shows_best_corr(multi_study):
    _, storage, result = multi_study
    best = max(trial.values[0] for trial in _load(storage).trials)
    # The closing table's best value is the highest correlation.
    assert f"{best:+.4f}" in result.output


def test_best_lists_pareto_front(multi_study):
    _, storage, _ = multi_study
    study = _load(storage)

    listed = runner.invoke(app, ["best", "--storage", storage, "--top", "1"])

    assert listed.exit_code == 0, listed.output
    assert "Pareto front" in listed.output
    assert "valid_mae" in listed.output
    # The whole front is listed even with --top 1, highest correlation first.
    front = sorted(study.best_trials, key=lambda trial: -trial.values[0])
    assert [trial.number for trial in best_trials(study, top=1)] == [trial.number for trial in front]


def test_export_picks_highest_corr_on_front(multi_study):
    folder, storage, _ = multi_study
    study = _load(storage)
    expected = max(study.best_trials, key=lambda trial: trial.values[0])
    path = folder / "params.yaml"

    exported = runner.invoke(app, ["best", "--storage", storage, "--export", str(path), "--force"])

    assert exported.exit_code == 0, exported.output
    assert pick_trial(study).number == expected.number
    meta = yaml.safe_load(path.read_text())["meta"]
    assert meta["trial"] == expected.number
    assert meta["values"] == {"valid_corr": expected.values[0], "valid_mae": expected.values[1]}
    assert meta["pareto_optimal"] is True


def test_report_draws_pareto(multi_study):
    folder, storage, _ = multi_study

    report = build_report(_load(storage), folder / "report")

    assert "pareto.png" in [path.name for path in report.figures]
    assert (folder / "report" / "pareto.png").stat().st_size > 0


@pytest.mark.parametrize("first_multi", [False, True])
def test_mode_switch_rejected(tiny_world, tmp_path, first_multi):
    config = StudyConfig.from_file(write_study_config(tmp_path / "config", tiny_world))
    single, multi = config, config.with_objectives(MULTI_OBJECTIVE)
    first, second = (multi, single) if first_multi else (single, multi)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    run_study(first, trials=1, storage=storage, studies_dir=tmp_path / "studies", seed=0)

    # Resuming in the other mode names both modes and the way out.
    with pytest.raises(StudyError, match="pass --study NEW") as raised:
        run_study(second, trials=2, storage=storage, studies_dir=tmp_path / "studies", seed=0)
    assert "single-objective" in str(raised.value)
    assert "multi-objective" in str(raised.value)
    # No trial was added by the rejected run.
    assert len(_load(storage).trials) == 1


def test_objectives_config_key(tiny_world, tmp_path):
    path = write_study_config(tmp_path, tiny_world)
    document = yaml.safe_load(path.read_text())
    document["objectives"] = ["valid_corr", "valid_mae"]
    path.write_text(yaml.safe_dump(document))

    config = StudyConfig.from_file(path)

    assert config.multi_objective
    assert config.directions == ["maximize", "minimize"]
    # The key survives the round trip that worker processes use.
    assert StudyConfig.from_dict(config.to_dict(), base_dir="/").objectives == MULTI_OBJECTIVE


@pytest.mark.parametrize(
    "objectives",
    [["valid_mae"], ["valid_mae", "valid_corr"], ["valid_corr", "valid_corr"], ["valid_corr", "accuracy"], [], "valid_corr"],
)
def test_invalid_objectives_raise(tiny_world, tmp_path, objectives):
    path = write_study_config(tmp_path, tiny_world)
    document = yaml.safe_load(path.read_text())
    document["objectives"] = objectives
    path.write_text(yaml.safe_dump(document))

    with pytest.raises(ConfigError, match="'objectives' must be"):
        StudyConfig.from_file(path)


def test_pruning_off_is_logged(tiny_world, caplog):
    config = StudyConfig(source=tiny_world["source"], target=tiny_world["target"], space=_tiny_space()).with_objectives(MULTI_OBJECTIVE)

    with caplog.at_level(logging.INFO, logger="search.config"):
        pruner = config.study_pruner()

    assert isinstance(pruner, optuna.pruners.NopPruner)
    assert "pruning is off" in caplog.text


def _tiny_space():
    from search.space import SearchSpace
    from tests.study_support import TINY_SPACE

    return SearchSpace.from_dict(TINY_SPACE)
