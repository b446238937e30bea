"""`adaptsearch run` and `adaptsearch best` in process through Typer's CliRunner."""

from __future__ import annotations

import re

import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

from adapters.errors import ConfigError, StudyError
from adapters.params import load_params
from search.cli import app
from tests.study_support import write_study_config

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def finished_study(tiny_world, tmp_path_factory):
    """Run `adaptsearch run --trials 3` once; return (folder, config path, storage URL)."""
    folder = tmp_path_factory.mktemp("cli-study")
    config = write_study_config(folder, tiny_world)
    storage = f"sqlite:///{folder / 'studies' / 'adaptsearch.db'}"
    result = runner.invoke(
        app,
        ["run", "--config", str(config), "--trials", "3", "--seed", "0",
         "--storage", storage, "--studies-dir", str(folder / "studies")],
    )
    assert result.exit_code == 0, result.output
    return folder, config, storage, result


def test_run_three_trials(finished_study):
    folder, _, storage, result = finished_study
    study = optuna.load_study(study_name="adaptsearch", storage=storage)

    # The study contains exactly three finished trials.
    assert len(study.trials) == 3
    assert all(trial.state.is_finished() for trial in study.trials)
    # The closing table names the original-settings row and the counts.
    assert "original settings" in result.output
    assert "3 / 3" in result.output


def test_run_creates_storage_folder(tiny_world, tmp_path, monkeypatch):
    # The default storage sqlite:///studies/adaptsearch.db is relative to the working folder.
    monkeypatch.chdir(tmp_path)
    config = write_study_config(tmp_path / "cfg", tiny_world)

    result = runner.invoke(app, ["run", "--config", str(config), "--trials", "1", "--seed", "0"])

    assert result.exit_code == 0, result.output
    # The studies folder, its database and the editable space copy are created.
    assert (tmp_path / "studies" / "adaptsearch.db").is_file()
    assert (tmp_path / "studies" / "space.yaml").is_file()


def test_best_lists_and_exports(finished_study, tmp_path):
    _, _, storage, _ = finished_study
    target = tmp_path / "params.yaml"

    result = runner.invoke(app, ["best", "--storage", storage, "--top", "2", "--export", str(target)])

    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="adaptsearch", storage=storage)
    best = max((trial for trial in study.trials if trial.value is not None), key=lambda trial: trial.value)
    params = load_params(target)
    # The export is the best trial, with its full TrainConfig and provenance.
    assert params.meta["trial"] == best.number
    assert params.meta["value"] == best.value
    assert params.train.to_dict() == best.user_attrs["train_config"]
    assert params.meta["fingerprints"] == study.user_attrs["adaptsearch"]["fingerprints"]
    # The table marks the original-settings trial.
    assert "(original)" in result.output


def test_export_keeps_existing_file(finished_study, tmp_path):
    _, _, storage, _ = finished_study
    target = tmp_path / "params.yaml"
    target.write_text("keep me\n")

    result = runner.invoke(app, ["best", "--storage", storage, "--export", str(target)])

    # Without --force an existing file is an error and stays unchanged.
    assert isinstance(result.exception, ConfigError)
    assert "--force" in str(result.exception)
    assert target.read_text() == "keep me\n"

    forced = runner.invoke(app, ["best", "--storage", storage, "--export", str(target), "--force"])
    # With --force the file is replaced by a parameter file.
    assert forced.exit_code == 0, forced.output
    assert "train" in yaml.safe_load(target.read_text())


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--study", "missing"], "study 'missing' not found.*stored studies: adaptsearch"),
        (["--trial", "99"], "no trial 99"),
    ],
)
def test_best_errors(finished_study, args, pattern):
    _, _, storage, _ = finished_study

    result = runner.invoke(app, ["best", "--storage", storage, "--export", "/tmp/unused-params.yaml", *args])

    # A missing study or trial is a StudyError that names what to pass instead.
    assert isinstance(result.exception, StudyError)
    assert re.search(pattern, str(result.exception)), str(result.exception)


@pytest.mark.parametrize(
    ("storage", "pattern"),
    [
        ("sqlite:////nonexistent-folder/none.db", "not found"),
        ("ftp://host/db", "unsupported scheme 'ftp'"),
        ("postgresql+psycopg2://user@127.0.0.1:1/db", "database server is running"),
    ],
)
def test_best_bad_storage(storage, pattern):
    result = runner.invoke(app, ["best", "--storage", storage])

    # Missing files, unknown schemes and unreachable servers give one StudyError each.
    assert isinstance(result.exception, StudyError)
    assert pattern in str(result.exception)


def test_run_rejects_bad_space(tiny_world, tmp_path):
    config = write_study_config(tmp_path, tiny_world, space={"parameters": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}})

    result = runner.invoke(app, ["run", "--config", str(config), "--storage", "memory", "--studies-dir", str(tmp_path)])

    # An invalid space is rejected before any data is prepared, naming the parameter.
    assert isinstance(result.exception, ConfigError)
    assert "'lr'" in str(result.exception)
    assert not (tmp_path / "cache").exists()


def test_main_prints_one_line(tmp_path, capsys):
    from search.cli import main

    # The CLI edge turns a StudyError into one red line and its exit code.
    with pytest.raises(SystemExit) as exit_info:
        main(["best", "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
    assert exit_info.value.code == StudyError.exit_code
    assert "not found" in capsys.readouterr().err


def test_run_bad_storage_before_data(tiny_world, tmp_path):
    config = write_study_config(tmp_path, tiny_world)

    result = runner.invoke(app, ["run", "--config", str(config), "--storage", "ftp://host/db", "--studies-dir", str(tmp_path)])

    # An unsupported storage URL is rejected before any data is prepared.
    assert isinstance(result.exception, StudyError)
    assert not (tmp_path / "cache").exists()


def test_interrupted_trial_warnings_dropped():
    import logging

    from search.cli import _DropInterruptedTrialLogs

    def record(message: str, error: BaseException | None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, (), exc_info)

    drop = _DropInterruptedTrialLogs()
    # Both of Optuna's warnings about a trial that Ctrl-C ended are dropped.
    assert not drop.filter(record("Trial 3 failed with parameters: {} because of ...", KeyboardInterrupt()))
    assert not drop.filter(record("Trial 3 failed with value None.", None))
    # The warnings of a trial that failed for another reason pass.
    assert drop.filter(record("Trial 4 failed with parameters: {} because of ...", ValueError("bad")))
    assert drop.filter(record("Trial 4 failed with value None.", None))
