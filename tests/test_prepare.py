"""Dataset descriptions, the prepared-data cache, its reuse and its invalidation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import adapters.prepare as prepare
from adapters.datasets import DatasetConfig, SplitConfig, load_dataset_configs
from adapters.errors import ConfigError
from adapters.prepare import PreparedData, Split, load_prepared, prepare_dataset, write_prepared


def test_config_round_trips_through_yaml(tiny_world, tmp_path):
    config = tiny_world["source"]
    text = yaml.safe_dump(config.to_dict())
    assert DatasetConfig.from_dict(yaml.safe_load(text), tmp_path) == config


def test_config_relative_folder_resolves_against_base(tmp_path):
    config = DatasetConfig.from_dict(
        {"name": "d", "folder": "data", "modalities": {"text": "t.csd"}, "labels": "l.csd", "split": {"kind": "grouped"}},
        tmp_path,
    )
    assert config.folder == (tmp_path / "data").resolve()
    assert config.split == SplitConfig(kind="grouped")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"modalities": {"smell": "s.csd"}}, "unknown modality 'smell'"),
        ({"modalities": {}}, "non-empty mapping"),
        ({"pooling": "max"}, "pooling must be one of mean, mean\\+std, got 'max'"),
        ({"missing": "zero"}, "missing must be one of drop, impute"),
        ({"label_column": -1}, "label_column must be an integer >= 0"),
        ({"split": {"kind": "random"}}, "split.kind must be one of"),
        ({"split": {"kind": "standard", "dataset": "iemocap"}}, "split.dataset must be one of mosi, mosei"),
        ({"split": {"kind": "grouped", "colour": 1}}, "split: unknown key 'colour'"),
        ({"split": None}, "split is missing"),
        ({"roots": {"smell": "x"}}, "roots: key must be a modality"),
        ({"format": "mmsa-pickle"}, "pickle must name the pickle file"),
    ],
)
def test_config_rejects_bad_values(change, message):
    base = {"name": "d", "folder": "/tmp", "modalities": {"text": "t.csd"}, "labels": "l.csd", "split": {"kind": "grouped"}}
    with pytest.raises(ConfigError, match=message):
        DatasetConfig.from_dict({**base, **change})


def test_load_dataset_configs_reads_world(tiny_world):
    world = tiny_world["source"].folder.parent / "world.yaml"
    assert load_dataset_configs(world) == tiny_world


def test_misspelt_section_key_rejected(tiny_world, tmp_path):
    world = yaml.safe_load((tiny_world["source"].folder.parent / "world.yaml").read_text())
    world["target"]["modalitis"] = world["target"].pop("modalities")
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(world))

    with pytest.raises(ConfigError, match=r"world\.yaml: dataset section 'target': unknown key 'modalitis'"):
        load_dataset_configs(path)


@pytest.mark.parametrize(
    ("given", "expected"),
    [({}, ("visual", "audio", "text")), ({"modalities": ["text", "audio"]}, ("audio", "text"))],
)
def test_pickle_modalities_default_to_all(given, expected):
    config = DatasetConfig.from_dict(
        {"name": "p", "format": "mmsa-pickle", "folder": "/tmp", "pickle": "aligned_50.pkl", **given}
    )

    assert tuple(config.modalities) == expected
    assert DatasetConfig.from_dict(config.to_dict()) == config


@pytest.mark.filterwarnings("ignore:dataset demo-mosei has non-finite input values")
def test_prepared_splits_never_share_a_video(tiny_world, tmp_path):
    for config in tiny_world.values():
        grouped = DatasetConfig.from_dict({**config.to_dict(), "split": {"kind": "grouped", "seed": 5}})
        data = prepare_dataset(grouped, tmp_path)
        videos = [set(data.splits[s].videos) for s in ("train", "valid", "test")]
        assert not videos[0] & videos[1]
        assert not videos[0] & videos[2]
        assert not videos[1] & videos[2]


def test_cache_is_reused(tiny_world, tmp_path, monkeypatch):
    first = prepare_dataset(tiny_world["target"], tmp_path)
    assert first.path.name == f"demo-mosi-{first.fingerprint[:16]}.h5"

    def fail(config):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(prepare, "_read_table", fail)
    second = prepare_dataset(tiny_world["target"], tmp_path)
    assert second.path == first.path
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(second.splits[split].features["text"], first.splits[split].features["text"])
        assert second.splits[split].ids.tolist() == first.splits[split].ids.tolist()
    assert second.report == first.report


def test_changed_input_invalidates_cache(tiny_world, tmp_path):
    folder = tmp_path / "world"
    folder.mkdir()
    source_folder = tiny_world["target"].folder
    for file in source_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = DatasetConfig.from_dict({**tiny_world["target"].to_dict(), "folder": str(folder)})
    first = prepare_dataset(config, tmp_path / "cache")

    import h5py

    label_file = folder / config.labels
    with h5py.File(label_file, "a") as handle:
        video = sorted(handle[config.roots["labels"]]["data"])[0]
        handle[config.roots["labels"]]["data"][video]["features"][0, 0] = -3.0
    second = prepare_dataset(config, tmp_path / "cache")
    assert second.fingerprint != first.fingerprint
    assert second.path != first.path
    assert -3.0 in second.splits["train"].labels.tolist() + second.splits["valid"].labels.tolist() + second.splits["test"].labels.tolist()


def test_setting_change_invalidates_cache(tiny_world, tmp_path):
    first = prepare_dataset(tiny_world["target"], tmp_path)
    changed = DatasetConfig.from_dict({**tiny_world["target"].to_dict(), "pooling": "mean+std"})
    second = prepare_dataset(changed, tmp_path)
    assert second.fingerprint != first.fingerprint
    assert second.widths["audio"] == 2 * first.widths["audio"]


def test_fingerprint_ignores_folder_and_name(tiny_world):
    config = tiny_world["target"]
    renamed = DatasetConfig.from_dict({**config.to_dict(), "name": "other"})
    assert prepare.fingerprint(renamed) == prepare.fingerprint(config)


def test_corrupt_cache_is_rebuilt(tiny_world, tmp_path):
    first = prepare_dataset(tiny_world["target"], tmp_path)
    first.path.write_bytes(b"not hdf5")
    second = prepare_dataset(tiny_world["target"], tmp_path)
    assert len(second.splits["train"]) == len(first.splits["train"])


def test_mosi_size_loads_fast(tmp_path):
    rng = np.random.default_rng(0)
    widths = {"visual": 65, "audio": 29, "text": 768}
    splits = {}
    for name, n in (("train", 1284), ("valid", 229), ("test", 686)):
        splits[name] = Split(
            features={m: rng.normal(size=(n, d)).astype(np.float32) for m, d in widths.items()},
            labels=rng.uniform(-3, 3, size=n).astype(np.float32),
            ids=np.array([f"video{i // 20}[{i % 20}]" for i in range(n)]),
            videos=np.array([f"video{i // 20}" for i in range(n)]),
        )
    data = PreparedData(
        name="mosi",
        fingerprint="0" * 64,
        modalities=tuple(widths),
        widths=widths,
        splits=splits,
        mean={m: np.zeros(d) for m, d in widths.items()},
        std={m: np.ones(d) for m, d in widths.items()},
        report={"segments": {}},
        path=Path(tmp_path / "mosi.h5"),
    )
    write_prepared(data)

    started = time.perf_counter()
    loaded = load_prepared(data.path)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    np.testing.assert_array_equal(loaded.splits["test"].features["text"], splits["test"].features["text"])
    assert loaded.splits["valid"].ids.tolist() == splits["valid"].ids.tolist()
