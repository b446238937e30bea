"""Search-space files: validation errors name the parameter, sampling stays in range."""

from pathlib import Path

import optuna
import pytest
import yaml

from adapters.errors import ConfigError
from adapters.params import ORIGINAL_SETTINGS, TrainConfig
from search.space import PACKAGED_SPACE_FILE, CategoricalParam, SearchSpace, ensure_space_file, load_space

REPO = Path(__file__).resolve().parents[1]


def _space(parameters: dict) -> SearchSpace:
    return SearchSpace.from_dict({"parameters": parameters})


INVALID = [
    pytest.param({"learning_rate": {"type": "float", "low": 0.1, "high": 1.0}}, "learning_rate", id="unknown-field"),
    pytest.param({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "'lr'.*low", id="low-above-high"),
    pytest.param({"lr": {"type": "float", "low": 0.0, "high": 0.01, "log": True}}, "'lr'.*log range", id="log-touches-zero"),
    pytest.param({"weight_decay": {"type": "float", "low": -1.0, "high": 0.01, "log": True}}, "weight_decay", id="log-negative"),
    pytest.param({"lr": {"type": "float", "low": "fast", "high": 0.01}}, "'lr'.*number", id="low-not-number"),
    pytest.param({"lr": {"type": "float", "low": 1e-4, "high": 0.01, "scale": "log"}}, "'lr'.*scale", id="unknown-key"),
    pytest.param({"lr": {"type": "float", "high": 0.01}}, "'lr'.*low", id="missing-low"),
    pytest.param({"lr": {"type": "float", "low": 1e-4, "high": 0.01, "log": "yes"}}, "'lr'.*log", id="log-not-bool"),
    pytest.param({"epochs": {"type": "int", "low": 10.5, "high": 20}}, "'epochs'.*integer", id="int-low-float"),
    pytest.param({"epochs": {"type": "int", "low": 0, "high": 20}}, "epochs", id="int-outside-trainconfig"),
    pytest.param({"n_clusters": {"type": "int", "low": 0, "high": 64, "log": True}}, "n_clusters", id="int-log-zero"),
    pytest.param({"objective": {"type": "categorical", "choices": []}}, "'objective'.*non-empty", id="empty-choices"),
    pytest.param({"objective": {"type": "categorical", "choices": ["mmd"]}}, "objective", id="choice-rejected"),
    pytest.param({"hidden": {"type": "categorical", "choices": [64, 64]}}, "'hidden'.*twice", id="duplicate-choice"),
    pytest.param({"hidden": {"type": "categorical", "choices": [[64]]}}, "'hidden'.*type list", id="choice-list"),
    pytest.param({"hidden": {"type": "uniform", "low": 1, "high": 4}}, "'hidden'.*type", id="unknown-type"),
    pytest.param({"hidden": {"fixed": 64, "low": 1}}, "'hidden'.*fixed", id="fixed-with-extra"),
    pytest.param({"lr": {"fixed": -1.0}}, "'lr'", id="fixed-invalid"),
    pytest.param({"batch_size": 0}, "batch_size", id="bare-fixed-invalid"),
]


@pytest.mark.parametrize(("parameters", "pattern"), INVALID)
def test_invalid_entry_names_parameter(parameters, pattern):
    # Every invalid entry raises ConfigError whose message names the parameter.
    with pytest.raises(ConfigError, match=pattern):
        _space(parameters)


@pytest.mark.parametrize(
    "document",
    [None, [], {"params": {}}, {"parameters": {}}, {"parameters": {"lr": 1e-3}, "version": 2}],
)
def test_invalid_top_level(document):
    # The file must be a mapping with a non-empty 'parameters' section and nothing else.
    with pytest.raises(ConfigError):
        SearchSpace.from_dict(document)


def test_fixed_forms_and_round_trip():
    space = _space(
        {
            "lr": {"type": "float", "low": "1e-5", "high": 1.0e-2, "log": True},
            "epochs": {"type": "int", "low": 10, "high": 100, "step": 10},
            "objective": {"type": "categorical", "choices": ["prototype-mse", "sinkhorn"]},
            "hidden": {"fixed": 64},
            "batch_size": 16,
            "modalities": ["text", "audio"],
        }
    )

    # A YAML string such as "1e-5" is read as a number.
    assert space.params["lr"].low == pytest.approx(1e-5)
    # {fixed: v}, a bare scalar and a bare list all fix the field.
    assert space.fixed == {"hidden": 64, "batch_size": 16, "modalities": ["text", "audio"]}
    # to_dict gives a mapping that from_dict reads back to the same space.
    assert SearchSpace.from_dict(space.to_dict()) == space
    # The mapping also survives YAML.
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space


def test_suggest_stays_in_range():
    space = load_space(PACKAGED_SPACE_FILE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    for _ in range(30):
        trial = study.ask()
        sampled = space.suggest(trial, objective=TrainConfig().objective)
        study.tell(trial, 0.0)

        # Every sampled value lies in its parameter's range and makes a valid TrainConfig.
        for name, value in sampled.items():
            assert space.params[name].contains(value), (name, value)
        TrainConfig.from_dict({**space.fixed, **sampled})


def test_n_clusters_sampled_only_for_prototype_objectives():
    space = load_space(PACKAGED_SPACE_FILE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    seen = set()
    for _ in range(40):
        trial = study.ask()
        sampled = space.suggest(trial, objective="prototype-mse")
        study.tell(trial, 0.0)
        seen.add(sampled["objective"])
        # Moments matching reads no prototypes, so its trials carry no cluster count.
        assert ("n_clusters" in sampled) == (sampled["objective"] != "moments"), sampled
        assert set(trial.params) == set(sampled)
    assert seen == {"prototype-mse", "sinkhorn", "moments"}


def test_fixed_objective_decides_which_settings_are_sampled():
    space = SearchSpace.from_dict({"parameters": {"n_clusters": {"type": "int", "low": 4, "high": 8}}})
    study = optuna.create_study()

    assert space.suggest(study.ask(), objective="moments") == {}
    assert set(space.suggest(study.ask(), objective="sinkhorn")) == {"n_clusters"}


def test_default_space_matches_brief_ranges():
    space = load_space(PACKAGED_SPACE_FILE)
    params = space.params

    # The default space opens the documented ranges and choices.
    assert (params["lr"].low, params["lr"].high, params["lr"].log) == (1e-5, 1e-2, True)
    assert (params["weight_decay"].low, params["weight_decay"].high, params["weight_decay"].log) == (1e-7, 1e-2, True)
    assert (params["clip_norm"].low, params["clip_norm"].high, params["clip_norm"].log) == (0.1, 10.0, True)
    assert (params["scheduler_factor"].low, params["scheduler_factor"].high) == (0.1, 0.9)
    assert (params["scheduler_patience"].low, params["scheduler_patience"].high) == (1, 10)
    assert (params["n_clusters"].low, params["n_clusters"].high, params["n_clusters"].log) == (4, 256, True)
    assert (params["epochs"].low, params["epochs"].high) == (10, 100)
    assert params["objective"] == CategoricalParam(("prototype-mse", "sinkhorn", "moments"))


def test_default_space_contains_original_settings():
    space = load_space(PACKAGED_SPACE_FILE)

    inside, outside = space.restrict(ORIGINAL_SETTINGS.to_dict())

    # The original script's settings lie inside the default space, so trial 0 can replay them.
    assert outside == {}
    assert set(inside) == set(space.params)


def test_repository_copy_matches_packaged_default():
    # studies/space.yaml in the repository is the same file as the packaged default.
    assert (REPO / "studies" / "space.yaml").read_text() == PACKAGED_SPACE_FILE.read_text()


def test_ensure_space_file_copies_once(tmp_path):
    path = ensure_space_file(tmp_path)

    # The first call writes the packaged default.
    assert path.read_text() == PACKAGED_SPACE_FILE.read_text()

    path.write_text("parameters:\n  lr: 0.001\n")
    # A later call keeps the user's edits.
    assert ensure_space_file(tmp_path).read_text() == "parameters:\n  lr: 0.001\n"


def test_missing_file_is_config_error(tmp_path):
    # A missing space file is a ConfigError naming the path.
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "nope.yaml")


def test_categorical_contains_checks_type():
    param = CategoricalParam((0.0, 0.1))

    # An int 0 is not the float choice 0.0, so replaying settings keeps value types.
    assert not param.contains(0)
    assert param.contains(0.0)
