"""MMSA / MulT aligned pickles: restricted unpickling, pooling over time and errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from adapters.datasets import DatasetConfig
from adapters.errors import DataError
from adapters.pickles import load_pickle, pool_steps
from adapters.prepare import prepare_dataset


def make_split(rng, n, video, labels_key="regression_labels", label_shape=None):
    labels = rng.uniform(-3, 3, size=n)
    split = {
        "vision": rng.normal(size=(n, 5, 4)),
        "audio": rng.normal(size=(n, 5, 3)),
        "text": rng.normal(size=(n, 5, 6)).astype(np.float32),
        labels_key: labels.reshape(label_shape or (n,)),
        "id": np.array([f"{video}{i // 3}[{i % 3}]" for i in range(n)], dtype=object),
    }
    split["audio"][:, 3:] = 0.0
    return split


def write_pickle(tmp_path, document, protocol=4):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(document, protocol=protocol))
    return DatasetConfig(
        name="pkl", format="mmsa-pickle", folder=tmp_path, modalities={m: "" for m in ("visual", "audio", "text")}, pickle="data.pkl"
    )


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo exploited",))


def test_pickle_naming_os_system_is_rejected(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": Exploit()}))
    with pytest.raises(DataError, match=r"global (posix|os)\.system"):
        load_pickle(path)


@pytest.mark.parametrize("target", [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load")])
def test_other_globals_are_rejected(tmp_path, target):
    module, name = target
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(DataError, match=f"global {module}.{name}"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_are_allowed(tmp_path, protocol):
    document = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5), "ids": np.array(["x", "y"])}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(document, protocol=protocol))
    loaded = load_pickle(path)
    np.testing.assert_array_equal(loaded["a"], document["a"])
    assert loaded["s"] == 2.5
    assert loaded["ids"].tolist() == ["x", "y"]


def test_pool_steps_skips_padding_and_masks_nonfinite():
    steps = np.array([[[1.0, 2.0], [3.0, np.nan], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    pooled, has_frames, nonfinite = pool_steps(steps)
    np.testing.assert_allclose(pooled[0], [2.0, 2.0])
    assert np.isnan(pooled[1]).all()
    assert has_frames.tolist() == [True, False]
    assert nonfinite == 1


@pytest.mark.parametrize(("labels_key", "label_shape"), [("regression_labels", None), ("labels", (9, 1, 1))])
def test_pickle_dataset_prepares(tmp_path, labels_key, label_shape):
    rng = np.random.default_rng(0)
    document = {
        name: make_split(rng, 9, name, labels_key, label_shape and (9, 1, 1))
        for name in ("train", "valid", "test")
    }
    data = prepare_dataset(write_pickle(tmp_path, document), tmp_path / "cache")
    assert data.widths == {"visual": 4, "audio": 3, "text": 6}
    assert len(data.splits["valid"]) == 9
    assert data.splits["train"].videos.tolist()[:4] == ["train0", "train0", "train0", "train1"]
    np.testing.assert_allclose(data.splits["test"].labels, document["test"][labels_key].reshape(9), rtol=1e-6)
    # Audio steps 3 and 4 are zero padding, so the pooled mean covers the first three steps.
    expected = document["train"]["audio"][:, :3].mean(axis=1)
    restored = data.splits["train"].features["audio"] * data.std["audio"] + data.mean["audio"]
    np.testing.assert_allclose(restored, expected, rtol=1e-5, atol=1e-5)


def test_pickle_nan_label_is_dropped(tmp_path):
    rng = np.random.default_rng(1)
    document = {name: make_split(rng, 6, name) for name in ("train", "valid", "test")}
    document["train"]["regression_labels"][2] = np.nan
    data = prepare_dataset(write_pickle(tmp_path, document), tmp_path / "cache")
    assert len(data.splits["train"]) == 5
    assert data.report["dropped"]["label_nan"] == 1


def test_missing_split(tmp_path):
    rng = np.random.default_rng(0)
    document = {name: make_split(rng, 3, name) for name in ("train", "test")}
    with pytest.raises(DataError, match="split\\(s\\) valid missing"):
        prepare_dataset(write_pickle(tmp_path, document), tmp_path / "cache")


def test_mismatched_lengths(tmp_path):
    rng = np.random.default_rng(0)
    document = {name: make_split(rng, 6, name) for name in ("train", "valid", "test")}
    document["valid"]["text"] = document["valid"]["text"][:5]
    with pytest.raises(DataError, match="split 'valid' array 'text' has shape \\(5, 5, 6\\), expected \\(6, T, d\\)"):
        prepare_dataset(write_pickle(tmp_path, document), tmp_path / "cache")


def test_label_shape_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    document = {name: make_split(rng, 6, name) for name in ("train", "valid", "test")}
    document["test"]["regression_labels"] = document["test"]["regression_labels"][:4]
    with pytest.raises(DataError, match="labels of shape \\(4,\\)"):
        prepare_dataset(write_pickle(tmp_path, document), tmp_path / "cache")
