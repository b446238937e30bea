import pytest
import torch

from adapters.metrics import Metrics
from adapters.params import TrainConfig
from adapters.source import SourceModelConfig, load_or_train_source
from adapters.trainer import EpochRecord, evaluate, labelled_rows, train_adapters
from synthetic_train import make_pair

MODALITIES = ("visual", "audio", "text")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("cache")
    source, target = make_pair()
    model, _ = load_or_train_source(SourceModelConfig(hidden=16, fusion_hidden=16, epochs=15, patience=3), source, cache, MODALITIES)
    return model, source, target, cache


def _config(**changes):
    return TrainConfig(**({"epochs": 3, "batch_size": 16, "n_clusters": 4, "hidden": 8} | changes))


@pytest.mark.parametrize("objective", ["prototype-mse", "sinkhorn", "moments"])
def test_training_is_bit_exact_for_seed(world, objective):
    model, source, target, cache = world
    config = _config(objective=objective, labelled_fraction=0.2, seed=5)

    first = train_adapters(model, source, target, config, cache_dir=cache)
    second = train_adapters(model, source, target, config, cache_dir=cache)

    assert [r.to_dict() for r in first.history] == [r.to_dict() for r in second.history]
    for modality in MODALITIES:
        for key, value in first.adapters[modality].state_dict().items():
            assert torch.equal(value, second.adapters[modality].state_dict()[key])


def test_training_seed_changes_result(world):
    model, source, target, cache = world

    first = train_adapters(model, source, target, _config(seed=1), cache_dir=cache)
    second = train_adapters(model, source, target, _config(seed=2), cache_dir=cache)

    assert first.history[-1].losses != second.history[-1].losses


def test_history_records_each_epoch(world):
    model, source, target, cache = world
    seen = []

    result = train_adapters(model, source, target, _config(labelled_fraction=0.1), callback=seen.append, cache_dir=cache)

    assert [record.epoch for record in seen] == [1, 2, 3]
    assert seen == result.history
    record = result.history[0]
    assert isinstance(record, EpochRecord)
    assert set(record.losses) == set(MODALITIES)
    assert record.task_loss is not None
    assert record.lr == pytest.approx(5e-4)
    assert isinstance(record.metrics, Metrics)
    assert record.metrics.n == len(target.splits["valid"].labels)
    assert result.labelled == 6


def test_no_task_loss_without_labels(world):
    model, source, target, cache = world

    result = train_adapters(model, source, target, _config(), cache_dir=cache)

    assert all(record.task_loss is None for record in result.history)
    assert result.labelled == 0


def test_best_epoch_restored(world):
    model, source, target, cache = world

    result = train_adapters(model, source, target, _config(epochs=6, objective="sinkhorn", labelled_fraction=0.3), cache_dir=cache)

    scores = [record.metrics.score for record in result.history]
    assert result.best_epoch == scores.index(max(scores)) + 1
    assert result.metrics == result.history[result.best_epoch - 1].metrics
    # The returned adapters reproduce the kept epoch's correlation.
    features = {m: torch.from_numpy(target.splits["valid"].features[m]) for m in MODALITIES}
    predictions, _ = evaluate(result.adapters, model, features)
    from adapters.metrics import compute_metrics

    assert compute_metrics(predictions, target.splits["valid"].labels).corr == pytest.approx(result.metrics.corr, abs=1e-9)


def test_keep_last_epoch(world):
    model, source, target, cache = world

    result = train_adapters(model, source, target, _config(), train_splits=("train", "valid"), keep="last", cache_dir=cache)

    assert result.best_epoch == 3


def test_keep_min_loss_epoch(world):
    model, source, target, cache = world
    config = _config(epochs=5, objective="moments")

    result = train_adapters(model, source, target, config, keep="min-loss", cache_dir=cache)

    totals = [config.align_weight * sum(record.losses.values()) for record in result.history]
    assert result.best_epoch == totals.index(min(totals)) + 1


def test_callback_exception_propagates(world):
    model, source, target, cache = world

    class Stop(Exception):
        pass

    def stop_at_two(record):
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_adapters(model, source, target, _config(), callback=stop_at_two, cache_dir=cache)


def test_batch_norm_last_batch_of_one(world):
    model, source, target, cache = world

    # 60 training rows in batches of 59 leave a last batch of one row.
    result = train_adapters(model, source, target, _config(norm="batch", batch_size=59), cache_dir=cache)

    assert len(result.history) == 3


def test_lr_reduced_on_plateau(world):
    model, source, target, cache = world

    result = train_adapters(model, source, target, _config(epochs=6, scheduler_patience=0, lr=0.5, scheduler_factor=0.5), cache_dir=cache)

    lrs = [record.lr for record in result.history]
    assert lrs[0] == 0.5
    assert min(lrs) < 0.5


def test_subset_of_modalities(world, tmp_path):
    model, source, target, cache = world
    text_model, _ = load_or_train_source(SourceModelConfig(hidden=8, fusion_hidden=8, epochs=3), source, tmp_path, ("text",))

    result = train_adapters(text_model, source, target, _config(modalities=("text",)), cache_dir=cache)

    assert set(result.adapters) == {"text"}
    assert set(result.diagnostics["features"]) == {"text"}


def test_labelled_rows_fixed_by_seed():
    assert labelled_rows(100, 0.0, 0).numel() == 0
    assert labelled_rows(100, 0.001, 0).numel() == 1
    assert torch.equal(labelled_rows(100, 0.1, 3), labelled_rows(100, 0.1, 3))
    assert labelled_rows(100, 0.1, 3).numel() == 10
