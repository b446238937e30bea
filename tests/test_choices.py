"""Modality subsets and seed counts as search-space entries, on the tiny world."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

import adapters.source
from adapters.errors import ConfigError
from adapters.params import load_params
from search.cli import app
from search.config import StudyConfig
from search.objective import SEED_SCORES_ATTR, SEED_STD_ATTR
from search.space import SearchSpace
from search.study import run_study
from search.subsets import SubsetParam, all_subsets, decode_subset, encode_subset
from tests.study_support import TINY_SPACE, write_study_config

torch.set_num_threads(1)
runner = CliRunner()

SUBSETS = [["visual", "audio", "text"], ["text"], "audio+text"]


def _space(**entries) -> dict:
    return {"parameters": {**TINY_SPACE["parameters"], **entries}}


def _config(tiny_world, folder, **entries) -> StudyConfig:
    return StudyConfig.from_file(write_study_config(folder, tiny_world, space=_space(**entries)))


def test_subset_encoding_is_canonical():
    # A list and a string in any order give one string in MODALITIES order.
    assert encode_subset(["text", "visual"]) == "visual+text"
    assert encode_subset("text+visual") == "visual+text"
    assert decode_subset("text+audio") == ("audio", "text")
    # There are seven non-empty subsets of three modalities, the full set first.
    assert len(all_subsets()) == 7
    assert all_subsets()[0] == "visual+audio+text"


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ([[]], "at least one"),
        ([""], "at least one"),
        ([["visual", "smell"]], "unknown modality 'smell'"),
        ([["text", "text"]], "twice"),
        ([["visual", "text"], "text+visual"], r"lists the subset 'visual\+text' twice"),
        ([42], "must be a list"),
        ([], "non-empty list"),
    ],
)
def test_invalid_subset_choices_raise(choices, message):
    entry = {"modalities": {"type": "categorical", "choices": choices}}
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_dict({"parameters": entry})


def test_subset_space_round_trips():
    space = SearchSpace.from_dict({"parameters": {"modalities": {"type": "categorical", "choices": SUBSETS}}})
    # The choices are stored as canonical strings, which Optuna accepts as categorical values.
    assert space.params["modalities"] == SubsetParam(("visual+audio+text", "text", "audio+text"))
    assert SearchSpace.from_dict(space.to_dict()) == space
    # A list value lies inside the space when its subset is one of the choices.
    assert space.params["modalities"].contains(["text", "audio"])
    assert not space.params["modalities"].contains(["visual"])


def test_fixed_subset_string(tiny_world, tmp_path):
    config = _config(tiny_world, tmp_path, modalities={"fixed": "text+audio"})
    # A fixed subset written as a string becomes the TrainConfig tuple.
    assert config.base_train_config().modalities == ("audio", "text")


def test_sampled_subset_maps_to_train_config(tiny_world, tmp_path):
    config = _config(tiny_world, tmp_path, modalities={"type": "categorical", "choices": SUBSETS})

    train = config.train_config({"modalities": "audio+text", "lr": 1e-3})

    assert train.modalities == ("audio", "text")


def test_source_trained_once_per_subset(tiny_world, tmp_path, monkeypatch):
    trained: list[tuple[str, ...]] = []
    original = adapters.source._train_network

    def counting(config, data, modalities):
        trained.append(tuple(modalities))
        return original(config, data, modalities)

    monkeypatch.setattr(adapters.source, "_train_network", counting)
    config = _config(tiny_world, tmp_path / "config", modalities={"type": "categorical", "choices": SUBSETS})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    studies = tmp_path / "studies"

    run_study(config, trials=8, storage=storage, studies_dir=studies, seed=0)

    study = optuna.load_study(study_name="adaptsearch", storage=storage)
    sampled = [trial.params["modalities"] for trial in study.trials]
    # Trial 0 keeps the original settings, which use all three modalities.
    assert sampled[0] == "visual+audio+text"
    # Each trial trains on the subset it sampled.
    for trial in study.trials:
        assert trial.user_attrs["train_config"]["modalities"] == list(decode_subset(trial.params["modalities"]))
    # Some subset was sampled more than once, so the count below can tell per-trial from per-subset training.
    assert len(sampled) > len(set(sampled))
    # The source model is trained once per sampled subset, not once per trial.
    assert sorted(trained) == sorted(decode_subset(subset) for subset in set(sampled))

    trained.clear()
    run_study(config, trials=10, storage=storage, studies_dir=studies, seed=0)
    # A resumed study loads every source model from the cache folder.
    assert trained == []


@pytest.mark.filterwarnings("ignore:the original settings .* lie outside the search space")
def test_export_and_train_on_subset(tiny_world, tmp_path):
    config = write_study_config(
        tmp_path, tiny_world, space=_space(modalities={"type": "categorical", "choices": [["audio", "text"], ["text"]]})
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    studies = tmp_path / "studies"
    searched = runner.invoke(
        app, ["run", "--config", str(config), "--trials", "3", "--seed", "0", "--storage", storage, "--studies-dir", str(studies)]
    )
    assert searched.exit_code == 0, searched.output

    params_path = tmp_path / "params.yaml"
    exported = runner.invoke(app, ["best", "--storage", storage, "--export", str(params_path)])
    assert exported.exit_code == 0, exported.output
    study = optuna.load_study(study_name="adaptsearch", storage=storage)
    best = study.best_trial
    subset = decode_subset(best.params["modalities"])
    # The exported file names the trial's subset as a plain list under train.modalities.
    assert yaml.safe_load(params_path.read_text())["train"]["modalities"] == list(subset)
    assert load_params(params_path).train.modalities == subset

    trained = runner.invoke(
        app,
        ["train", "--params", str(params_path), "--out", str(tmp_path / "run"), "--studies", str(studies)],
    )
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The retraining and its original-settings comparison both use the subset.
    assert metrics["tuned"]["config"]["modalities"] == list(subset)
    assert metrics["original"]["config"]["modalities"] == list(subset)
    # Retraining on the subset repeats the trial's MOSI-valid correlation.
    assert metrics["tuned"]["valid"]["corr"] == pytest.approx(best.value, abs=1e-6)
    saved = torch.load(tmp_path / "run" / "adapters.pt", weights_only=False)
    assert sorted(saved["state_dict"]) == sorted(subset)


@pytest.mark.filterwarnings("ignore:the original settings .* lie outside the search space")
def test_seeds_entry_stores_spread(tiny_world, tmp_path):
    config = _config(tiny_world, tmp_path / "config", seeds={"type": "categorical", "choices": [2, 3]})
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    run_study(config, trials=3, storage=storage, studies_dir=tmp_path / "studies", seed=0)

    study = optuna.load_study(study_name="adaptsearch", storage=storage)
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        scores = trial.user_attrs[SEED_SCORES_ATTR]
        # One score per seed, and the trial's value is their mean.
        assert len(scores) == trial.params["seeds"]
        assert trial.value == pytest.approx(sum(scores) / len(scores))
        # The spread is the sample standard deviation of the seed scores.
        mean = sum(scores) / len(scores)
        expected = (sum((score - mean) ** 2 for score in scores) / (len(scores) - 1)) ** 0.5
        assert trial.user_attrs[SEED_STD_ATTR] == pytest.approx(expected)


def test_fixed_seeds_stores_spread(tiny_world, tmp_path):
    config = _config(tiny_world, tmp_path / "config", seeds={"fixed": 2})
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    run_study(config, trials=1, storage=storage, studies_dir=tmp_path / "studies", seed=0)

    trial = optuna.load_study(study_name="adaptsearch", storage=storage).trials[0]
    # Two seeds give two scores and a spread. Two different training runs do not score the same.
    assert len(trial.user_attrs[SEED_SCORES_ATTR]) == 2
    assert trial.user_attrs[SEED_STD_ATTR] > 0.0
