"""Overlap weights and masked pooling of one video's frames."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.pooling import overlap_weights, pool_video


def test_weights_are_overlap_seconds():
    segments = np.array([[0.5, 2.5]])
    frames = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], dtype=float)
    np.testing.assert_allclose(overlap_weights(segments, frames), [[0.5, 1.0, 0.5, 0.0]])


def test_touching_frame_has_no_weight():
    weights = overlap_weights(np.array([[2.0, 4.0]]), np.array([[1.0, 2.0], [4.0, 5.0]]))
    np.testing.assert_array_equal(weights, [[0.0, 0.0]])


def test_zero_length_frames_inside_segment_count():
    # Words without duration: all overlaps are zero, so the points inside get equal weights.
    frames = np.array([[1.0, 1.0], [1.5, 1.5], [5.0, 5.0]])
    np.testing.assert_array_equal(overlap_weights(np.array([[0.0, 2.0]]), frames), [[1.0, 1.0, 0.0]])


def test_zero_length_frame_beside_timed_frames_has_no_weight():
    frames = np.array([[0.0, 2.0], [1.0, 1.0]])
    np.testing.assert_array_equal(overlap_weights(np.array([[0.0, 2.0]]), frames), [[2.0, 0.0]])


def test_zero_length_segment_takes_covering_frame():
    frames = np.array([[0.0, 1.0], [1.0, 3.0], [3.0, 4.0]])
    weights = overlap_weights(np.array([[2.0, 2.0]]), frames)
    np.testing.assert_array_equal(weights, [[0.0, 1.0, 0.0]])


def test_pool_mean_is_weighted_and_masked():
    features = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, -np.inf]])
    frames = np.array([[0, 1], [1, 2], [2, 3]], dtype=float)
    pooled = pool_video(features, frames, np.array([[0.0, 3.0], [2.0, 3.0], [5.0, 6.0]]))
    np.testing.assert_allclose(pooled.values[0], [2.0, 4.0])
    # Segment [2, 3] holds only the -inf frame in column 1: no finite value, so NaN.
    assert pooled.values[1, 0] == 3.0
    assert np.isnan(pooled.values[1, 1])
    assert np.isnan(pooled.values[2]).all()
    np.testing.assert_array_equal(pooled.has_frames, [True, True, False])
    assert pooled.nonfinite == 2


def test_pool_std_is_exact_for_large_values():
    rng = np.random.default_rng(0)
    features = 1e5 + rng.normal(size=(50, 3))
    frames = np.stack([np.arange(50.0), np.arange(50.0) + 1], axis=1)
    pooled = pool_video(features, frames, np.array([[0.0, 50.0]]), with_std=True)
    np.testing.assert_allclose(pooled.values[0, :3], features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pooled.values[0, 3:], features.std(axis=0), rtol=1e-9)


def test_video_without_frames():
    pooled = pool_video(np.zeros((0, 4)), np.zeros((0, 2)), np.array([[0.0, 1.0]]))
    assert pooled.values.shape == (1, 4)
    assert not pooled.has_frames[0]


@pytest.mark.parametrize("n_segments", [1, 7])
def test_pooled_shape_follows_width(n_segments):
    segments = np.stack([np.arange(n_segments, dtype=float), np.arange(n_segments) + 1.0], axis=1)
    frames = np.stack([np.arange(0, n_segments, 0.5), np.arange(0, n_segments, 0.5) + 0.5], axis=1)
    pooled = pool_video(np.ones((len(frames), 13)), frames, segments)
    assert pooled.values.shape == (n_segments, 13)
