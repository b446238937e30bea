"""The generated demo world: layout, widths, faults, segment tables and reuse."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest

from adapters.csd import open_csd
from adapters.demo import ensure_demo_world, write_demo_world
from adapters.errors import DataError
from adapters.prepare import prepare_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_world_has_sdk_layout_and_widths(tiny_world):
    expected = {
        "source": {"visual": 713, "audio": 74, "text": 300},
        "target": {"visual": 65, "audio": 29, "text": 768},
    }
    for kind, config in tiny_world.items():
        for modality, file_name in config.modalities.items():
            with h5py.File(config.path_of(file_name), "r") as handle:
                (root,) = handle.keys()
                assert handle[root]["metadata"]["root name"][0].decode() == root
            with open_csd(config.path_of(file_name)) as csd:
                assert csd.width() == expected[kind][modality]


def test_source_labels_are_mosei_like(tiny_world):
    config = tiny_world["source"]
    with open_csd(config.path_of(config.labels)) as csd:
        labels = np.concatenate([csd.read(v)[0] for v in csd.videos()])
    assert labels.shape[1] == 7
    assert labels[:, 0].min() >= -3
    assert labels[:, 0].max() <= 3
    assert labels[:, 1:].min() >= 0
    assert labels[:, 1:].max() <= 3


@pytest.mark.filterwarnings("ignore:dataset demo-mosei has non-finite input values")
def test_source_has_openface_and_covarep_faults(tiny_world, tmp_path):
    data = prepare_dataset(tiny_world["source"], tmp_path)
    assert data.report["nonfinite_values"]["visual"] > 0
    assert data.report["nonfinite_values"]["audio"] > 0
    assert np.abs(data.mean["visual"]).max() > 1e3


def test_sentiment_is_recoverable_from_every_target_modality(tmp_path):
    configs = write_demo_world(tmp_path, seed=1, size="tiny")
    data = prepare_dataset(configs["target"], tmp_path / "cache")
    train = data.splits["train"]
    for modality in data.modalities:
        x = np.concatenate([train.features[modality], np.ones((len(train), 1))], axis=1)
        coefficients = np.linalg.lstsq(x.T @ x + 10 * np.eye(x.shape[1]), x.T @ train.labels, rcond=None)[0]
        assert np.corrcoef(x @ coefficients, train.labels)[0, 1] > 0.5, modality


@pytest.mark.filterwarnings("ignore:dataset demo-mosei has non-finite input values")
def test_same_seed_same_files(tmp_path):
    first = write_demo_world(tmp_path / "a", seed=3, size="tiny")
    second = write_demo_world(tmp_path / "b", seed=3, size="tiny")
    for kind in ("source", "target"):
        a = prepare_dataset(first[kind], tmp_path / "cache")
        b = prepare_dataset(second[kind], tmp_path / "cache")
        assert a.fingerprint == b.fingerprint


def write_table(path, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["video_id", "segment", "start", "end", "split", "sentiment"])
        writer.writerows(rows)
    return path


def test_world_follows_segment_table(tmp_path):
    rows = [
        ("a", 1, 0.0, 2.0, "train", 1.0),
        ("a", 2, 2.0, 2.0, "train", -1.0),
        ("a", 3, 2.5, 4.0, "train", ""),
        ("b", 0, 1.0, 3.0, "valid", 0.4),
        ("c", 0, 0.0, 1.0, "test", -2.2),
        ("c", 1, 0.5, 1.5, "test", 3.0),
    ]
    configs = write_demo_world(tmp_path, segments_csv=write_table(tmp_path / "t.csv", rows), size="tiny")
    data = prepare_dataset(configs["target"], tmp_path / "cache")
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [2, 1, 2]
    assert data.splits["train"].ids.tolist() == ["a[0]", "a[1]"]
    np.testing.assert_allclose(data.splits["test"].labels, [-2.2, 3.0], rtol=1e-6)
    assert data.report["label_rows"] == 5


def test_segment_table_rejects_video_in_two_splits(tmp_path):
    rows = [("a", 1, 0.0, 2.0, "train", 1.0), ("a", 2, 2.0, 3.0, "test", 1.0)]
    with pytest.raises(DataError, match="'a' is in both train and test"):
        write_demo_world(tmp_path, segments_csv=write_table(tmp_path / "t.csv", rows))


@pytest.mark.skipif(not (SHARED_DATA / "mosi" / "segments.csv").is_file(), reason="real MOSI segment table not present")
def test_real_mosi_table_gives_standard_split_sizes(tmp_path):
    configs = write_demo_world(tmp_path, segments_csv=SHARED_DATA / "mosi" / "segments.csv", size="tiny")
    data = prepare_dataset(configs["target"], tmp_path / "cache")
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [1284, 229, 686]
    assert [data.report["videos"][s] for s in ("train", "valid", "test")] == [52, 10, 31]


def test_ensure_demo_world_generates_once(tmp_path, monkeypatch):
    import adapters.demo as demo

    calls = []
    original = demo.write_demo_world

    def tiny(out_dir, **options):
        calls.append(out_dir)
        return original(out_dir, size="tiny")

    monkeypatch.setattr(demo, "write_demo_world", tiny)
    first = ensure_demo_world(tmp_path)
    second = ensure_demo_world(tmp_path)
    assert len(calls) == 1
    assert first == second
    assert first["target"].folder == (tmp_path / "demo-world" / "target").resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
