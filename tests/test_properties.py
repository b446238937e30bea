"""Property tests: `.csd` segment pooling invariants and exact ``params.yaml`` round trips."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adapters import MODALITIES
from adapters.datasets import DatasetConfig
from adapters.params import NORMS, OBJECTIVES, RunParams, SourceModelConfig, TrainConfig, dump_params, load_params
from adapters.pooling import pool_video

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- pooling -----------------------------------------------------------------------------------

finite_values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def video(draw, max_frames: int = 12, max_width: int = 4):
    """Draw (features (n, d), frames (n, 2), segment (1, 2)); every frame and the segment last > 0 s."""
    n = draw(st.integers(1, max_frames))
    d = draw(st.integers(1, max_width))
    features = draw(hnp.arrays(np.float64, (n, d), elements=finite_values))
    starts = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 10.0)))
    lengths = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 3.0)))
    frames = np.stack([starts, starts + lengths], axis=1)
    segment_start = draw(st.floats(0.0, 10.0))
    segment = np.array([[segment_start, segment_start + draw(st.floats(0.05, 5.0))]])
    return features, frames, segment


def assert_pooled_close(actual, expected, features: np.ndarray) -> None:
    """Compare pooled rows: means to 1e-9, stds to 1e-6 of the feature scale.

    The std comes from E[x^2] - E[x]^2, so a spread of zero can come out as the square root of
    a rounding error (about 1e-9 for values near 1); the tolerance allows for that.
    """
    width = features.shape[1]
    scale = 1.0 + np.abs(features).max()
    assert actual.has_frames[0] == expected.has_frames[0]
    np.testing.assert_allclose(actual.values[:, :width], expected.values[:, :width], rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(actual.values[:, width:], expected.values[:, width:], rtol=0, atol=1e-6 * scale)


def overlaps(frames: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Seconds of overlap of each frame with the one segment, computed frame by frame."""
    start, end = segment[0]
    return np.array([max(0.0, min(end, frame_end) - max(start, frame_start)) for frame_start, frame_end in frames])


@SETTINGS
@given(video())
def test_pooled_mean_within_frame_range(drawn):
    features, frames, segment = drawn
    weights = overlaps(frames, segment)
    assume(weights.sum() > 0)

    pooled = pool_video(features, frames, segment)

    counted = features[weights > 0]
    # The segment has frames, and each pooled feature lies between the smallest and the largest
    # value of that feature among the frames that overlap the segment.
    assert pooled.has_frames[0]
    tolerance = 1e-9 * (1.0 + np.abs(counted).max())
    assert np.all(pooled.values[0] >= counted.min(axis=0) - tolerance)
    assert np.all(pooled.values[0] <= counted.max(axis=0) + tolerance)


@SETTINGS
@given(video())
def test_pooled_mean_is_overlap_weighted(drawn):
    features, frames, segment = drawn
    weights = overlaps(frames, segment)
    assume(weights.sum() > 0)

    pooled = pool_video(features, frames, segment)

    # The pooled value is the mean of the frames weighted by their overlap in seconds.
    expected = (weights[:, None] * features).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(pooled.values[0], expected, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(video(), st.data())
def test_splitting_a_frame_keeps_mean(drawn, data):
    features, frames, segment = drawn
    index = data.draw(st.integers(0, len(frames) - 1))
    start, end = frames[index]
    middle = (start + end) / 2
    # The frame is replaced by two halves with the same values, appended at the end.
    split_frames = np.concatenate([np.delete(frames, index, axis=0), [[start, middle], [middle, end]]])
    split_features = np.concatenate([np.delete(features, index, axis=0), features[[index, index]]])

    whole = pool_video(features, frames, segment, with_std=True)
    halves = pool_video(split_features, split_frames, segment, with_std=True)

    # Splitting a frame in two with the same value changes neither the mean nor the std.
    assert_pooled_close(halves, whole, features)


@SETTINGS
@given(video(), st.randoms(use_true_random=False))
def test_frame_order_keeps_mean(drawn, random):
    features, frames, segment = drawn
    order = list(range(len(frames)))
    random.shuffle(order)

    original = pool_video(features, frames, segment, with_std=True)
    shuffled = pool_video(features[order], frames[order], segment, with_std=True)

    # Pooling does not depend on the order in which frames are stored.
    assert_pooled_close(shuffled, original, features)


@SETTINGS
@given(video(), st.integers(0, 3))
def test_nan_frame_is_left_out(drawn, column):
    features, frames, segment = drawn
    weights = overlaps(frames, segment)
    assume(weights.sum() > 0)
    column = column % features.shape[1]
    # A frame inside the segment whose value of one feature is NaN.
    extra = features[weights.argmax()].copy()
    extra[column] = np.nan
    start, end = segment[0]

    plain = pool_video(features, frames, segment)
    with_nan = pool_video(np.vstack([features, extra]), np.vstack([frames, [[start, end]]]), segment)

    # The NaN value is excluded from its feature and counted, so that feature keeps its mean.
    assert with_nan.nonfinite == plain.nonfinite + 1
    np.testing.assert_allclose(with_nan.values[0, column], plain.values[0, column], rtol=1e-9, atol=1e-9)


@SETTINGS
@given(video())
def test_segment_without_overlap_has_no_frames(drawn):
    features, frames, _ = drawn
    after = frames[:, 1].max() + 1.0
    segment = np.array([[after, after + 1.0]])

    pooled = pool_video(features, frames, segment)

    # A segment after the last frame has no frames and a NaN row, never zeros.
    assert not pooled.has_frames[0]
    assert np.isnan(pooled.values[0]).all()


# --- params.yaml round trip --------------------------------------------------------------------

unit = st.floats(0.0, 1.0, exclude_max=True)
positive = st.floats(1e-8, 1.0)


train_configs = st.builds(
    TrainConfig,
    objective=st.sampled_from(OBJECTIVES),
    lr=st.floats(1e-8, 1.0),
    weight_decay=st.floats(0.0, 1.0),
    clip_norm=st.floats(1e-6, 1e6),
    scheduler_factor=st.floats(1e-6, 1.0, exclude_max=True),
    scheduler_patience=st.integers(0, 1000),
    epochs=st.integers(1, 10000),
    batch_size=st.integers(1, 1 << 16),
    n_clusters=st.integers(1, 4096),
    prototype_samples=st.integers(1, 1 << 24),
    labelled_fraction=st.floats(0.0, 1.0),
    task_weight=st.floats(0.0, 1e6),
    align_weight=st.floats(0.0, 1e6),
    hidden=st.integers(1, 1 << 16),
    depth=st.integers(1, 16),
    dropout=unit,
    norm=st.sampled_from(NORMS),
    sinkhorn_reg=st.floats(1e-6, 100.0),
    sinkhorn_iterations=st.integers(1, 100000),
    seed=st.integers(0, 2**32 - 1),
    seeds=st.integers(1, 100),
    modalities=st.permutations(MODALITIES).flatmap(lambda names: st.integers(1, 3).map(lambda k: tuple(names[:k]))),
)

source_models = st.builds(
    SourceModelConfig,
    hidden=st.integers(1, 1 << 16),
    fusion_hidden=st.integers(1, 1 << 16),
    dropout=unit,
    epochs=st.integers(1, 10000),
    lr=positive,
    weight_decay=st.floats(0.0, 1.0),
    batch_size=st.integers(1, 1 << 16),
    patience=st.integers(1, 10000),
    seed=st.integers(0, 2**32 - 1),
    torchscript=st.one_of(st.none(), st.just(Path("/models/source.pt"))),
)

names = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_ é"), min_size=1, max_size=12)


@st.composite
def dataset_sections(draw):
    modalities = draw(st.lists(st.sampled_from(MODALITIES), min_size=1, max_size=3, unique=True))
    section = {
        "name": draw(names),
        "folder": "/data/" + draw(names),
        "modalities": {modality: f"{modality}-{draw(names)}.csd" for modality in modalities},
        "labels": "labels.csd",
        "label_column": draw(st.integers(0, 7)),
        "pooling": draw(st.sampled_from(["mean", "mean+std"])),
        "missing": draw(st.sampled_from(["drop", "impute"])),
    }
    kind = draw(st.sampled_from(["standard", "file", "grouped"]))
    if kind == "standard":
        section["split"] = {"kind": kind, "dataset": draw(st.sampled_from(["mosi", "mosei"]))}
    elif kind == "file":
        section["split"] = {"kind": kind, "path": "splits.json"}
    else:
        valid = draw(st.floats(0.0, 0.4))
        test = draw(st.floats(0.0, 0.4))
        section["split"] = {"kind": kind, "seed": draw(st.integers(0, 10**6)), "fractions": [1.0 - valid - test, valid, test]}
    if draw(st.booleans()):
        section["roots"] = {modalities[0]: draw(names)}
    return DatasetConfig.from_dict(section, "/")


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.floats(allow_nan=False, allow_infinity=False), names
)
metas = st.dictionaries(names, st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=6), max_size=5)


@SETTINGS
@given(train_configs)
def test_train_config_yaml_round_trip(config):
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)

    restored = TrainConfig.from_dict(yaml.safe_load(text))

    # Every field comes back equal, floats bit for bit.
    assert restored == config
    assert all(
        math.copysign(1.0, getattr(restored, name)) == math.copysign(1.0, getattr(config, name))
        for name, value in config.to_dict().items()
        if isinstance(value, float)
    )


@SETTINGS
@given(dataset_sections(), dataset_sections(), source_models, train_configs, metas)
def test_params_file_round_trip(source, target, source_model, train, meta):
    params = RunParams(source=source, target=target, source_model=source_model, train=train, meta=meta)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        dump_params(params, path)
        restored = load_params(path)
        second = Path(folder) / "again.yaml"
        dump_params(restored, second)
        rewritten = second.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")

    # Writing and reading params.yaml gives back equal parameters, and writing them again
    # gives the same text.
    assert restored == params
    assert restored.to_dict() == params.to_dict()
    assert rewritten
