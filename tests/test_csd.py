"""Reading .csd files: SDK-written files, hand-computed pooling and every structural fault."""

from __future__ import annotations

import json
import logging
import warnings

import h5py
import numpy as np
import pytest

from adapters.datasets import DatasetConfig, SplitConfig
from adapters.demo import write_csd
from adapters.errors import DataError
from adapters.prepare import prepare_dataset

META = {"root name": "x"}

# Two videos: v1 (train) has two labelled segments, v2 (test) one.
VISUAL = {
    "v1": (
        np.array([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=np.float64),
        np.array([[0, 1], [1, 2], [2, 3], [3, 4]], dtype=np.float64),
    ),
    "v2": (np.array([[0, 0], [2, 2]], dtype=np.float64), np.array([[0, 1], [1, 2]], dtype=np.float64)),
}
AUDIO = {
    "v1": (np.array([[5.0], [7.0]]), np.array([[0, 2], [2, 4]], dtype=np.float64)),
    "v2": (np.array([[1.0]]), np.array([[0, 2]], dtype=np.float64)),
}
LABELS = {
    "v1": (np.array([[1.5], [-0.5]]), np.array([[0.5, 2.5], [2.0, 4.0]])),
    "v2": (np.array([[2.0]]), np.array([[0.0, 2.0]])),
}
SPLIT = {"train": ["v1"], "valid": [], "test": ["v2"]}


def build(tmp_path, *, visual=VISUAL, audio=AUDIO, labels=LABELS, split=SPLIT, **options) -> DatasetConfig:
    """Write a tiny csd dataset with the repository's writer and return its description."""
    write_csd(tmp_path / "visual.csd", "vis", visual, META)
    write_csd(tmp_path / "audio.csd", "aud", audio, META)
    write_csd(tmp_path / "labels.csd", "lab", labels, META)
    (tmp_path / "split.json").write_text(json.dumps(split))
    return DatasetConfig(
        name="toy",
        folder=tmp_path,
        modalities={"visual": "visual.csd", "audio": "audio.csd"},
        labels="labels.csd",
        split=SplitConfig(kind="file", path="split.json"),
        **options,
    )


def raw(data, split, modality):
    """Undo the normalisation: features in the file's units."""
    return data.splits[split].features[modality] * data.std[modality] + data.mean[modality]


def test_sdk_written_files_pool_to_hand_values(tmp_path):
    mmdatasdk = pytest.importorskip("mmsdk.mmdatasdk")
    from mmsdk.mmdatasdk.configurations.metadataconfigs import featuresetMetadataTemplate

    def deploy(name, entries, path):
        data = {v: {"features": f, "intervals": i} for v, (f, i) in entries.items()}
        metadata = {key: "test" for key in featuresetMetadataTemplate}
        metadata["root name"] = name
        sequence = mmdatasdk.computational_sequence(name)
        sequence.setData(data, name)
        sequence.setMetadata(metadata, name)
        sequence.deploy(str(path))

    deploy("vis", VISUAL, tmp_path / "visual.csd")
    deploy("aud", AUDIO, tmp_path / "audio.csd")
    deploy("All Labels", LABELS, tmp_path / "labels.csd")
    (tmp_path / "split.json").write_text(json.dumps(SPLIT))
    config = DatasetConfig(
        name="sdk",
        folder=tmp_path,
        modalities={"visual": "visual.csd", "audio": "audio.csd"},
        labels="labels.csd",
        split=SplitConfig(kind="file", path="split.json"),
    )
    data = prepare_dataset(config, tmp_path / "cache")

    # Segment v1[0] = [0.5, 2.5] overlaps visual frames by 0.5, 1, 0.5 seconds.
    np.testing.assert_allclose(raw(data, "train", "visual")[0], [2.0, 20.0], atol=1e-5)
    # Segment v1[1] = [2, 4] touches frame [1, 2] only at a point, which carries no weight.
    np.testing.assert_allclose(raw(data, "train", "visual")[1], [3.5, 35.0], atol=1e-5)
    np.testing.assert_allclose(raw(data, "train", "audio")[:, 0], [5.5, 7.0], atol=1e-5)
    np.testing.assert_allclose(raw(data, "test", "visual")[0], [1.0, 1.0], atol=1e-5)
    assert data.splits["train"].ids.tolist() == ["v1[0]", "v1[1]"]
    assert data.splits["test"].videos.tolist() == ["v2"]
    np.testing.assert_allclose(data.splits["train"].labels, [1.5, -0.5])


def test_mean_std_pooling_doubles_width(tmp_path):
    data = prepare_dataset(build(tmp_path, pooling="mean+std"), tmp_path / "cache")
    assert data.widths == {"visual": 4, "audio": 2}
    values = raw(data, "train", "visual")[0]
    # Weights 0.5, 1, 0.5 on values 1, 2, 3: variance (0.5 * 1 + 0 + 0.5 * 1) / 2 = 0.5.
    np.testing.assert_allclose(values, [2.0, 20.0, np.sqrt(0.5), 10 * np.sqrt(0.5)], atol=1e-5)


def test_normalisation_uses_train_split_only(tmp_path):
    data = prepare_dataset(build(tmp_path), tmp_path / "cache")
    np.testing.assert_allclose(data.mean["visual"], [2.75, 27.5])
    np.testing.assert_allclose(data.std["audio"], [0.75])
    train = data.splits["train"].features["visual"]
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
    assert data.splits["test"].features["visual"].dtype == np.float32


def test_nonfinite_values_are_masked_and_counted(tmp_path):
    features = VISUAL["v1"][0].copy()
    features[1, 0] = np.nan
    visual = {**VISUAL, "v1": (features, VISUAL["v1"][1])}
    with pytest.warns(RuntimeWarning, match="visual: 1 non-finite"):
        data = prepare_dataset(build(tmp_path, visual=visual), tmp_path / "cache")
    # Without frame 2, column 0 of v1[0] is (0.5 * 1 + 0.5 * 3) / 1; column 1 keeps all frames.
    np.testing.assert_allclose(raw(data, "train", "visual")[0], [2.0, 20.0], atol=1e-5)
    assert data.report["nonfinite_values"]["visual"] == 1
    assert data.report["nonfinite_replaced"]["visual"] == 0


def test_feature_without_finite_value_gets_train_mean(tmp_path):
    features = VISUAL["v1"][0].copy()
    features[2:, 1] = -np.inf
    visual = {**VISUAL, "v1": (features, VISUAL["v1"][1])}
    with pytest.warns(RuntimeWarning, match="1 pooled cells filled"):
        data = prepare_dataset(build(tmp_path, visual=visual), tmp_path / "cache")
    # v1[1] = [2, 4] has only -inf frames in column 1, so it gets the train mean of column
    # 1, taken over the finite train cells: v1[0] alone, whose finite frames pool to
    # (0.5 * 10 + 1 * 20) / 1.5.
    pooled = raw(data, "train", "visual")
    assert data.mean["visual"][1] == pytest.approx(25 / 1.5)
    assert pooled[1, 1] == pytest.approx(25 / 1.5, rel=1e-5)
    assert np.isfinite(pooled).all()
    assert data.report["nonfinite_replaced"]["visual"] == 1
    assert data.report["nonfinite_values"]["visual"] == 2


def test_no_warning_for_clean_data(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_dataset(build(tmp_path), tmp_path / "cache")


def test_segment_without_frames_is_dropped(tmp_path):
    audio = {**AUDIO, "v1": (np.array([[5.0]]), np.array([[0.0, 1.0]]))}
    data = prepare_dataset(build(tmp_path, audio=audio), tmp_path / "cache")
    assert data.splits["train"].ids.tolist() == ["v1[0]"]
    assert data.report["dropped"]["no_frames_audio"] == 1


def test_segment_without_frames_is_imputed(tmp_path):
    audio = {**AUDIO, "v1": (np.array([[5.0]]), np.array([[0.0, 1.0]]))}
    data = prepare_dataset(build(tmp_path, audio=audio, missing="impute"), tmp_path / "cache")
    assert data.splits["train"].ids.tolist() == ["v1[0]", "v1[1]"]
    assert raw(data, "train", "audio")[1, 0] == pytest.approx(5.0)
    assert data.report["imputed_segments"]["audio"] == 1


def test_video_missing_in_one_file_is_reported(tmp_path, caplog):
    # Set the level here: other tests (the benchmark smoke runs) raise the "adapters" logger's level.
    caplog.set_level(logging.WARNING, logger="adapters.csd")
    audio = {"v1": AUDIO["v1"]}
    data = prepare_dataset(build(tmp_path, audio=audio), tmp_path / "cache")
    assert data.report["videos_missing"]["audio"] == ["v2"]
    assert data.report["videos_missing"]["visual"] == []
    assert data.report["dropped"]["no_frames_audio"] == 1
    assert "v2" in caplog.text


def test_nan_label_is_dropped_not_zero(tmp_path):
    labels = {**LABELS, "v1": (np.array([[np.nan], [-0.5]]), LABELS["v1"][1])}
    data = prepare_dataset(build(tmp_path, labels=labels), tmp_path / "cache")
    assert data.splits["train"].ids.tolist() == ["v1[1]"]
    assert data.report["dropped"]["label_nan"] == 1
    assert 0.0 not in data.splits["train"].labels


def test_label_outside_range_names_file_and_video(tmp_path):
    labels = {**LABELS, "v2": (np.array([[3.5]]), LABELS["v2"][1])}
    with pytest.raises(DataError, match=r"labels\.csd.*'v2'.*outside \[-3, 3\]"):
        prepare_dataset(build(tmp_path, labels=labels), tmp_path / "cache")


def test_label_column_out_of_range(tmp_path):
    with pytest.raises(DataError, match="label_column 2 does not exist"):
        prepare_dataset(build(tmp_path, label_column=2), tmp_path / "cache")


@pytest.mark.parametrize(
    ("features", "intervals", "message"),
    [
        (np.zeros((3, 2)), np.array([[0, 1], [1, 2]], dtype=float), "3 feature rows but 2 interval rows"),
        (np.zeros(2), np.array([[0, 1], [1, 2]], dtype=float), "expected 2-D"),
        (np.zeros((2, 2)), np.array([[0, 1], [np.nan, 2]]), "non-finite interval at row 1"),
        (np.zeros((2, 2)), np.array([[0, 1], [2, 1.5]]), "reversed interval at row 1"),
    ],
)
def test_broken_video_names_file_and_video(tmp_path, features, intervals, message):
    visual = {**VISUAL, "v2": (features, intervals)}
    with pytest.raises(DataError, match=message) as caught:
        prepare_dataset(build(tmp_path, visual=visual), tmp_path / "cache")
    assert "visual.csd" in str(caught.value)
    assert "'v2'" in str(caught.value)


def test_empty_file(tmp_path):
    config = build(tmp_path)
    (tmp_path / "visual.csd").write_bytes(b"")
    with pytest.raises(DataError, match="visual.csd: file is empty"):
        prepare_dataset(config, tmp_path / "cache")


def test_file_without_groups(tmp_path):
    config = build(tmp_path)
    h5py.File(tmp_path / "visual.csd", "w").close()
    with pytest.raises(DataError, match="no top-level group"):
        prepare_dataset(config, tmp_path / "cache")


def test_several_roots_need_a_name(tmp_path):
    config = build(tmp_path)
    with h5py.File(tmp_path / "visual.csd", "a") as handle:
        handle.create_group("other/data")
    with pytest.raises(DataError, match=r"several top-level groups \(other, vis\)"):
        prepare_dataset(config, tmp_path / "cache")
    named = DatasetConfig.from_dict({**config.to_dict(), "roots": {"visual": "vis"}})
    assert len(prepare_dataset(named, tmp_path / "cache").splits["train"]) == 2


def test_wrong_root_name(tmp_path):
    config = DatasetConfig.from_dict({**build(tmp_path).to_dict(), "roots": {"audio": "nope"}})
    with pytest.raises(DataError, match="root group 'nope' not found; the file holds aud"):
        prepare_dataset(config, tmp_path / "cache")


def test_root_without_data_group(tmp_path):
    config = build(tmp_path)
    with h5py.File(tmp_path / "audio.csd", "w") as handle:
        handle.create_group("aud/metadata")
    with pytest.raises(DataError, match="no 'data' group"):
        prepare_dataset(config, tmp_path / "cache")


def test_widths_must_agree_across_videos(tmp_path):
    visual = {**VISUAL, "v2": (np.zeros((2, 3)), VISUAL["v2"][1])}
    with pytest.raises(DataError, match="different feature widths"):
        prepare_dataset(build(tmp_path, visual=visual), tmp_path / "cache")


def test_any_width_is_kept(tmp_path):
    wide = {v: (np.repeat(f, 500, axis=1), i) for v, (f, i) in VISUAL.items()}
    data = prepare_dataset(build(tmp_path, visual=wide), tmp_path / "cache")
    assert data.widths["visual"] == 1000
