"""best_trials and export_params on hand-made studies, no training."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from adapters.errors import ConfigError, StudyError
from adapters.params import TrainConfig, load_params
from search import __version__
from search.config import StudyConfig
from search.export import best_trials, export_params, pick_trial
from search.study import STUDY_ATTR
from tests.study_support import write_study_config

FINGERPRINTS = {"source": "aaaa", "target": "bbbb"}


@pytest.fixture
def study(tiny_world, tmp_path) -> optuna.Study:
    """A study with adaptsearch's stored config and four hand-made trials."""
    config = StudyConfig.from_file(write_study_config(tmp_path, tiny_world))
    study = optuna.create_study(study_name="hand", direction="maximize")
    study.set_user_attr(STUDY_ATTR, {"config": config.to_dict(), "fingerprints": FINGERPRINTS, "version": "0.0.1"})
    for value, lr, state in ((0.2, 1e-3, TrialState.COMPLETE), (0.6, 2e-3, TrialState.COMPLETE),
                             (None, 3e-3, TrialState.PRUNED), (0.6, 4e-3, TrialState.COMPLETE)):
        train = config.train_config({"lr": lr}).to_dict()
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"lr": lr},
                distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
                user_attrs={"train_config": train, "best_epoch": 3, "metrics": {"corr": value}},
                intermediate_values={1: 0.0} if state == TrialState.PRUNED else {},
            )
        )
    return study


def test_best_trials_order(study):
    ranked = best_trials(study, top=3)

    # Complete trials come best first; a tie goes to the earlier trial; pruned trials are left out.
    assert [trial.number for trial in ranked] == [1, 3, 0]


def test_export_best(study, tmp_path):
    path, trial = export_params(study, tmp_path / "params.yaml", storage_url="sqlite:///x.db")

    params = load_params(path)
    # The best trial is exported with its complete TrainConfig, sampled and fixed values.
    assert trial.number == 1
    assert params.train == TrainConfig.from_dict(study.trials[1].user_attrs["train_config"])
    assert params.train.lr == 2e-3
    assert params.train.epochs == 4
    # Meta names the study, trial, value, fingerprints and versions.
    assert params.meta["study"] == "hand"
    assert params.meta["trial"] == 1
    assert params.meta["value"] == 0.6
    assert params.meta["fingerprints"] == FINGERPRINTS
    assert params.meta["adaptsearch_version"] == __version__
    assert params.meta["study_version"] == "0.0.1"
    # A trial the sampler chose is marked as sampled, not left with an empty origin.
    assert params.meta["origin"] == "sampled"
    # The data sections point at the study's datasets.
    assert params.target.to_dict() == StudyConfig.from_dict(study.user_attrs[STUDY_ATTR]["config"], "/").target.to_dict()


def test_export_chosen_trial(study, tmp_path):
    _, trial = export_params(study, tmp_path / "params.yaml", storage_url="memory", trial_number=0)

    # --trial picks a trial other than the best.
    assert trial.number == 0
    assert load_params(tmp_path / "params.yaml").train.lr == 1e-3


def test_export_pruned_trial_rejected(study, tmp_path):
    # Only COMPLETE trials can be exported, because only they have a value.
    with pytest.raises(StudyError, match="PRUNED"):
        export_params(study, tmp_path / "params.yaml", storage_url="memory", trial_number=2)


def test_export_keeps_existing(study, tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text("old\n")

    # An existing file is kept unless force is set.
    with pytest.raises(ConfigError, match="already exists"):
        export_params(study, target, storage_url="memory")
    assert target.read_text() == "old\n"

    export_params(study, target, storage_url="memory", force=True)
    assert load_params(target).meta["trial"] == 1


def test_no_complete_trial(tmp_path):
    empty = optuna.create_study(direction="maximize")

    # A study without complete trials has nothing to export.
    with pytest.raises(StudyError, match="no complete trial"):
        pick_trial(empty)


def test_foreign_study(tmp_path):
    foreign = optuna.create_study(direction="maximize")
    foreign.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)

    # A study that adaptsearch did not create cannot be exported.
    with pytest.raises(StudyError, match="not created by 'adaptsearch run'"):
        export_params(foreign, tmp_path / "params.yaml", storage_url="memory")


def test_top_must_be_positive(study):
    # --top below 1 is rejected by name.
    with pytest.raises(ConfigError, match="top"):
        best_trials(study, top=0)
