"""run_study on the tiny world: trial 0, resume to exactly N, rejected resumes, Ctrl-C."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

import adapters.trainer
import search.objective
from adapters.errors import StudyError
from adapters.params import ORIGINAL_SETTINGS
from search.config import StudyConfig
from search.notes import read_trial_note
from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN
from search.study import STUDY_ATTR, Reporter, run_study
from tests.study_support import TINY_SPACE, write_study_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def studies_dir(tmp_path_factory):
    """One cache folder per module, so the source model is trained once."""
    return tmp_path_factory.mktemp("studies")


@pytest.fixture(scope="module")
def config(tiny_world, studies_dir) -> StudyConfig:
    return StudyConfig.from_file(write_study_config(studies_dir / "config", tiny_world))


def _run(config, storage, studies_dir, trials, **kwargs):
    return run_study(config, trials=trials, storage=storage, studies_dir=studies_dir, seed=0, **kwargs)


def _load(storage: str, name: str = "adaptsearch") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def test_first_trial_replays_original_settings(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    summary = _run(config, storage, studies_dir, trials=2)

    study = _load(storage)
    first = study.trials[0]
    # Trial 0 carries the original-settings mark and is the summary's baseline.
    assert first.user_attrs[ORIGIN_ATTR] == ORIGINAL_SETTINGS_ORIGIN
    assert summary.baseline_number == 0
    # Its open parameters are the original script's values.
    assert first.params["lr"] == ORIGINAL_SETTINGS.lr
    assert first.params["objective"] == ORIGINAL_SETTINGS.objective
    # The stored TrainConfig combines the original values with the space's fixed values.
    assert first.user_attrs["train_config"]["epochs"] == TINY_SPACE["parameters"]["epochs"]["fixed"]
    # The study reports one named metric.
    assert study.metric_names == ["valid_corr"]


def test_trial_attrs_are_json(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    _run(config, storage, studies_dir, trials=1)

    trial = _load(storage).trials[0]
    # Metrics, diagnostics and the per-epoch history are stored, and all of it is strict JSON.
    for key in ("metrics", "diagnostics", "history", "train_config", "best_epoch", "seconds"):
        assert key in trial.user_attrs, key
    json.dumps(trial.user_attrs, allow_nan=False)
    # The history has one entry per epoch with the reported correlation.
    assert [entry["epoch"] for entry in trial.user_attrs["history"]] == [1, 2, 3, 4]
    assert trial.intermediate_values[4] == trial.user_attrs["history"][-1]["valid_corr"]
    # The value is the best epoch's MOSI-valid correlation.
    assert trial.value == pytest.approx(max(trial.intermediate_values.values()))


def test_resume_reaches_exactly_n(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    first = _run(config, storage, studies_dir, trials=2)
    second = _run(config, storage, studies_dir, trials=4)
    third = _run(config, storage, studies_dir, trials=4)

    states = [trial.state for trial in _load(storage).trials]
    # The first run stops at 2 finished trials.
    assert first.counts.finished == 2
    # Rerunning with --trials 4 runs the remaining 2, not 4 more.
    assert second.new_trials == 2
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 4
    # A rerun of a study that already contains N finished trials runs none.
    assert third.new_trials == 0
    assert len(states) == 4


def test_resume_on_other_data_rejected(config, studies_dir, tmp_path, tmp_path_factory):
    from adapters.demo import write_demo_world

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(config, storage, studies_dir, trials=1)
    other_world = write_demo_world(tmp_path_factory.mktemp("other-world"), size="tiny", seed=1)
    other = StudyConfig.from_file(write_study_config(tmp_path / "other", other_world))

    # Resuming on data with another fingerprint raises and explains how to start a new study.
    with pytest.raises(StudyError, match=r"other source data.*--study NEW"):
        _run(other, storage, studies_dir, trials=2)
    # The rejected run added no trial.
    assert len(_load(storage).trials) == 1


def test_resume_with_other_space_rejected(config, studies_dir, tmp_path, tiny_world):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(config, storage, studies_dir, trials=1)
    space = json.loads(json.dumps(TINY_SPACE))
    space["parameters"]["lr"]["high"] = 0.1
    changed = StudyConfig.from_file(write_study_config(tmp_path / "changed", tiny_world, space=space))

    # Resuming with a changed space raises and names the changed parameter.
    with pytest.raises(StudyError, match=r"search space \(differs in lr\)"):
        _run(changed, storage, studies_dir, trials=2)


def test_foreign_study_rejected(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    foreign = optuna.create_study(study_name="adaptsearch", storage=storage, direction="maximize")
    foreign.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)

    # A study with trials but without adaptsearch's stored config is not resumed.
    with pytest.raises(StudyError, match="not created by adaptsearch"):
        _run(config, storage, studies_dir, trials=2)


def test_study_stores_config_and_fingerprints(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    _run(config, storage, studies_dir, trials=1)

    stored = _load(storage).user_attrs[STUDY_ATTR]
    # The study stores both data fingerprints and a config that rebuilds the same StudyConfig.
    assert set(stored["fingerprints"]) == {"source", "target"}
    assert StudyConfig.from_dict(stored["config"], base_dir="/").to_dict() == config.to_dict()


def test_ctrl_c_leaves_no_running_trial(config, studies_dir, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    real_train = adapters.trainer.train_adapters

    def interrupted_train(*args, callback=None, **kwargs):
        def interrupt(record):
            callback(record)
            if record.epoch == 2:
                raise KeyboardInterrupt

        return real_train(*args, callback=interrupt, **kwargs)

    class RecordingReporter(Reporter):
        def __init__(self):
            self.updates = []

        def update(self, counts, best, running=0):
            self.updates.append(counts)

    reporter = RecordingReporter()
    monkeypatch.setattr(search.objective, "train_adapters", interrupted_train)
    summary = _run(config, storage, studies_dir, trials=3, reporter=reporter)

    trials = _load(storage).trials
    # The run reports the interruption instead of raising it.
    assert summary.interrupted
    # The progress line's last counts include the interrupted trial, as the closing table does.
    assert reporter.updates[-1].failed == summary.counts.failed == 1
    # The interrupted trial is FAIL, never left RUNNING.
    assert trials[0].state == TrialState.FAIL
    assert all(trial.state != TrialState.RUNNING for trial in trials)
    # Its settings are queued again, still marked as the original settings.
    assert trials[1].state == TrialState.WAITING
    assert trials[1].user_attrs[ORIGIN_ATTR] == ORIGINAL_SETTINGS_ORIGIN

    monkeypatch.setattr(search.objective, "train_adapters", real_train)
    rerun = _run(config, storage, studies_dir, trials=3)

    # The rerun replays the queued original settings first and reaches exactly 3 finished trials.
    assert rerun.counts.finished == 3
    assert rerun.baseline_state == "COMPLETE"
    assert _load(storage).trials[1].params == trials[0].params


def test_pruning_in_objective_spares_original(tiny_world, studies_dir, tmp_path, caplog):
    # A threshold of 1.0 fails every epoch, so every trial that may be pruned is pruned at epoch 1.
    pruning = StudyConfig.from_file(
        write_study_config(tmp_path / "cfg", tiny_world, pruner={"threshold": 1.0, "warmup_epochs": 1})
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    caplog.set_level("INFO", logger="search.study")
    summary = _run(pruning, storage, studies_dir, trials=3)

    trials = _load(storage).trials
    # The log names the rule and the reason of each pruned trial.
    assert any(message.startswith("trial 1 pruned by the threshold rule: valid correlation") for message in caplog.messages)
    # The original-settings trial runs to the end despite the threshold.
    assert trials[0].state == TrialState.COMPLETE
    assert len(trials[0].intermediate_values) == 4
    # The other trials are pruned at epoch 1 with the rule and the reason stored.
    assert [trial.state for trial in trials[1:]] == [TrialState.PRUNED, TrialState.PRUNED]
    assert trials[1].user_attrs["pruned_rule"] == "threshold"
    assert "epoch 1" in trials[1].user_attrs["pruned_reason"]
    assert len(trials[1].user_attrs["history"]) == 1
    # They keep the metrics of their best epoch, which their dashboard notes show.
    assert trials[1].user_attrs["best_epoch"] == 1
    assert trials[1].user_attrs["metrics"]["corr"] == pytest.approx(trials[1].intermediate_values[1])
    note = read_trial_note(_load(storage), 1)
    assert "### MOSI-valid metrics (epoch 1, the best before pruning)" in note
    assert "| MAE |" in note
    # Pruned trials count towards the requested total, and the summary counts them by rule.
    assert summary.counts.finished == 3
    assert summary.pruned_by_rule == {"threshold": 2}


def test_parallel_workers_share_count(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    summary = _run(config, storage, studies_dir, trials=4, jobs=2, threads=1)

    states = [trial.state for trial in _load(storage).trials]
    # Two worker processes together stop at exactly 4 finished trials.
    assert summary.counts.finished == 4
    assert len(states) == 4
    assert not summary.interrupted


def test_timeout_starts_no_new_trial(config, studies_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    summary = _run(config, storage, studies_dir, trials=3, timeout=0.001)

    states = [trial.state for trial in _load(storage).trials]
    # The timeout passed while the data was loaded, so no trial started.
    assert summary.new_trials == 0
    # Only the queued original-settings trial is stored, still WAITING for a later run.
    assert states == [TrialState.WAITING]


def test_diverged_trial_scores_minus_one(config, studies_dir, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    real_evaluate = adapters.trainer.evaluate

    def diverging_evaluate(*args, **kwargs):
        predictions, adapted = real_evaluate(*args, **kwargs)
        return np.full_like(predictions, np.nan), adapted

    monkeypatch.setattr(adapters.trainer, "evaluate", diverging_evaluate)
    _run(config, storage, studies_dir, trials=1)

    trial = _load(storage).trials[0]
    # A run whose predictions became non-finite completes with the worst score, never NaN.
    assert trial.state == TrialState.COMPLETE
    assert trial.value == -1.0
    # The reason is stored with the trial.
    assert "diverged" in trial.user_attrs["degenerate_reason"]


def test_other_errors_stop_the_run(config, studies_dir, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def broken_train(*args, **kwargs):
        raise ValueError("shapes do not match")

    monkeypatch.setattr(search.objective, "train_adapters", broken_train)

    # Any other error is a bug or a data problem: it stops the run instead of being skipped.
    with pytest.raises(ValueError, match="shapes do not match"):
        _run(config, storage, studies_dir, trials=2)
    # The trial it happened in is FAIL, not RUNNING.
    assert _load(storage).trials[0].state == TrialState.FAIL


def test_run_leaves_notes_and_adapters(config, studies_dir, tmp_path):
    import optuna_dashboard
    from report_support import wsgi_get

    from search.artifacts import artifact_store_for, stored_adapters

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(config, storage, studies_dir, trials=3, keep_adapters=2)
    study = _load(storage)
    store = artifact_store_for(storage, create=False)
    app = optuna_dashboard.wsgi(study._storage, artifact_store=store)

    status, raw = wsgi_get(app, f"/api/studies/{study._study_id}")
    assert status.startswith("200")
    served = json.loads(raw)
    # Every finished trial has a note with its metrics table.
    for trial in served["trials"]:
        assert "valid_corr" in trial["note"]["body"] or "Pearson" in trial["note"]["body"]
    # The study note names the original-settings baseline.
    assert "original" in served["note"]["body"].lower()
    # Adapters are kept for the two best complete trials and listed on the dashboard.
    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert len(stored_adapters(study)) == min(2, len(complete))
    listed = [trial["number"] for trial in served["trials"] if trial["artifacts"]]
    assert sorted(listed) == sorted(stored_adapters(study))
