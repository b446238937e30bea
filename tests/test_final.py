import dataclasses
import json

import pytest
import torch
import yaml

from adapters.errors import ConfigError, DataError
from adapters.final import retrain
from adapters.params import RunParams, SourceModelConfig, TrainConfig, load_params
from adapters.pipeline import prepare_context
from adapters.trainer import train_adapters

SOURCE_MODEL = SourceModelConfig(hidden=16, fusion_hidden=16, epochs=5, patience=2)
TRAIN = TrainConfig(epochs=3, n_clusters=4, hidden=16, batch_size=8, objective="sinkhorn", labelled_fraction=0.2, seed=3)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _params(world, **train_changes):
    return RunParams(world["source"], world["target"], SOURCE_MODEL, TRAIN.replace(**train_changes), {"trial": 7})


def test_context_trains_source_once(tiny_world, tmp_path):
    first = prepare_context(tiny_world["source"], tiny_world["target"], SOURCE_MODEL, tmp_path)
    second = prepare_context(tiny_world["source"], tiny_world["target"], SOURCE_MODEL, tmp_path)

    assert first.source_info["trained"] is True
    assert second.source_info["trained"] is False
    assert first.modalities == ("visual", "audio", "text")


def test_context_rejects_empty_target_valid(tiny_world, tmp_path, caplog):
    target = tiny_world["target"]
    folds = json.loads(target.path_of(target.split.path).read_text())
    # Every valid video moves to train, so the target has nothing to score trials on.
    moved = {"train": folds["train"] + folds["valid"], "valid": [], "test": folds["test"]}
    (tmp_path / "splits.json").write_text(json.dumps(moved))
    no_valid = dataclasses.replace(target, split=dataclasses.replace(target.split, path=str(tmp_path / "splits.json")))

    # Set the level here: other tests (the benchmark smoke runs) raise the "adapters" logger's level.
    caplog.set_level("WARNING", logger="adapters.prepare")
    with pytest.raises(DataError, match=r"target dataset 'demo-mosi' has no valid segment left"):
        prepare_context(tiny_world["source"], no_valid, SOURCE_MODEL, tmp_path)
    assert "dataset demo-mosi: the valid split has no segment left after splitting and dropping" in caplog.messages
    # The check comes before the source model is trained.
    assert not (tmp_path / "source").exists()


def test_context_rejects_missing_modality(tiny_world, tmp_path):
    target = tiny_world["target"]
    text_only = dataclasses.replace(target, modalities={"text": target.modalities["text"]})

    with pytest.raises(DataError) as caught:
        prepare_context(tiny_world["source"], text_only, SOURCE_MODEL, tmp_path, ("visual", "text"))

    assert "visual" in str(caught.value)
    assert "target" in str(caught.value)


def test_retrain_reproduces_trial_valid_corr(tiny_world, tmp_path):
    params = _params(tiny_world)
    context = prepare_context(params.source, params.target, params.source_model, tmp_path / "cache", params.train.modalities)
    trial = train_adapters(
        context.source_model, context.source_data, context.target_data, params.train, cache_dir=tmp_path / "cache"
    )

    result = retrain(params, tmp_path, tmp_path / "run", compare_original=False)

    assert trial.metrics.corr is not None
    assert result.valid_corr == pytest.approx(trial.metrics.corr, abs=1e-6)
    assert result.tuned.best_epoch == trial.best_epoch


def test_retrain_writes_run_folder(tiny_world, tmp_path):
    params = _params(tiny_world)

    result = retrain(params, tmp_path, tmp_path / "run", compare_original=False)

    run = tmp_path / "run"
    assert sorted(path.name for path in run.iterdir()) == [
        "adapters.pt", "diagnostics.json", "history.json", "metrics.json", "params.yaml"
    ]
    assert load_params(run / "params.yaml") == params
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tuned"]["test"]["n"] == result.tuned.test.n
    assert result.tuned.test.n > 0
    assert metrics["tuned"]["valid"]["corr"] == result.valid_corr
    assert metrics["original"] is None
    history = json.loads((run / "history.json").read_text())
    assert len(history["tuned"]) == 3
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert set(diagnostics["tuned"]) == {"valid", "test"}
    stored = torch.load(run / "adapters.pt", weights_only=True)
    assert stored["adapter_config"]["text"]["in_dim"] == 768
    assert set(stored["state_dict"]) == {"visual", "audio", "text"}
    assert not list(tmp_path.glob(".tmp-*"))


def test_retrain_include_valid_keeps_last_epoch(tiny_world, tmp_path):
    result = retrain(_params(tiny_world), tmp_path, tmp_path / "run", include_valid=True, compare_original=False)

    assert result.tuned.best_epoch == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["include_valid"] is True


def test_retrain_rejects_existing_folder(tiny_world, tmp_path):
    (tmp_path / "run").mkdir()

    with pytest.raises(ConfigError, match="already exists"):
        retrain(_params(tiny_world), tmp_path, tmp_path / "run", compare_original=False)


def test_trainer_never_reads_test_split(tiny_world, tmp_path):
    context = prepare_context(tiny_world["source"], tiny_world["target"], SOURCE_MODEL, tmp_path)
    # Without a test split the search's training still runs: only the final retraining tests.
    del context.target_data.splits["test"]

    result = train_adapters(context.source_model, context.source_data, context.target_data, TRAIN, cache_dir=tmp_path)

    assert len(result.history) == 3


def test_params_yaml_from_world_roundtrip(tiny_world, tmp_path):
    params = _params(tiny_world)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))

    assert load_params(path) == params


def test_retrain_warns_when_data_differs_from_search(tiny_world, tmp_path, caplog):
    context = prepare_context(tiny_world["source"], tiny_world["target"], SOURCE_MODEL, tmp_path / "cache")
    matching = {"source": context.source_data.fingerprint, "target": context.target_data.fingerprint}
    searched_elsewhere = {"source": matching["source"], "target": "0" * 64}

    with caplog.at_level("WARNING", logger="adapters.final"):
        retrain(dataclasses.replace(_params(tiny_world), meta={"fingerprints": matching}), tmp_path, tmp_path / "same",
                compare_original=False)
    assert not [record for record in caplog.records if "differs from the one" in record.message]

    with caplog.at_level("WARNING", logger="adapters.final"):
        retrain(dataclasses.replace(_params(tiny_world), meta={"fingerprints": searched_elsewhere}), tmp_path,
                tmp_path / "other", compare_original=False)
    warnings = [record.message for record in caplog.records if "differs from the one" in record.message]
    assert len(warnings) == 1
    assert "target dataset demo-mosi" in warnings[0]
