"""Pool the frames of one video into one vector per labelled segment.

A frame counts for a segment when its interval overlaps the segment's interval. Its weight
is the overlap in seconds. Frames without duration have no overlap to weigh, so:

* a zero-length frame (a time point, for example a word with no duration) counts when it
  lies inside the segment, and a frame that contains a zero-length segment counts for it;
* when every counting frame of a segment has zero overlap, those frames get equal weights;
  when some have positive overlap, the zero-overlap frames get weight 0.

Non-finite values (``-inf`` in COVAREP, NaN rows in OpenFace) are masked per feature: the
weighted mean of a feature uses only the frames where that feature is finite. A feature
with no finite value among a segment's frames is returned as NaN; `adapters.prepare`
fills such cells with the train-split mean of that feature and counts them.

All work is one overlap matrix of shape (n_segments, n_frames) per video, so memory is
bounded by the largest video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PooledVideo:
    """Pooled features of the labelled segments of one video.

    Attributes
    ----------
    values : ndarray of shape (n_segments, d) or (n_segments, 2 * d), float64
        Overlap-weighted mean (then std, with ``with_std``) per feature. NaN marks a feature
        without a finite value in the segment, and whole rows are NaN where ``has_frames``
        is False.
    has_frames : ndarray of shape (n_segments,), bool
        Whether any frame counts for the segment.
    nonfinite : int
        Number of non-finite feature values among the video's frames.
    """

    values: np.ndarray
    has_frames: np.ndarray
    nonfinite: int


def overlap_weights(segments: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Compute the pooling weight of every frame for every segment.

    Parameters
    ----------
    segments : ndarray of shape (n_segments, 2)
        Segment start and end times in seconds.
    frames : ndarray of shape (n_frames, 2)
        Frame start and end times in seconds.

    Returns
    -------
    ndarray of shape (n_segments, n_frames), float64
        Overlap in seconds, with the zero-length rules of the module docstring applied. A
        row of zeros means that no frame counts for the segment.
    """
    seg_start = segments[:, 0:1].astype(np.float64)
    seg_end = segments[:, 1:2].astype(np.float64)
    frame_start = frames[:, 0][None, :].astype(np.float64)
    frame_end = frames[:, 1][None, :].astype(np.float64)

    weights = np.clip(np.minimum(seg_end, frame_end) - np.maximum(seg_start, frame_start), 0.0, None)

    point_frame = (frame_end == frame_start) & (frame_start >= seg_start) & (frame_start <= seg_end)
    point_segment = (seg_end == seg_start) & (frame_start <= seg_start) & (frame_end >= seg_start)
    counted = (weights > 0) | point_frame | point_segment

    no_duration = counted.any(axis=1) & (weights.sum(axis=1) == 0)
    weights[no_duration] = counted[no_duration].astype(np.float64)
    return weights


def pool_video(
    features: np.ndarray,
    frames: np.ndarray,
    segments: np.ndarray,
    *,
    with_std: bool = False,
) -> PooledVideo:
    """Pool one video's frames into its segments with overlap weights and a finite mask.

    Parameters
    ----------
    features : ndarray of shape (n_frames, d)
        Frame features in the file's units; may contain NaN and infinities.
    frames : ndarray of shape (n_frames, 2)
        Frame intervals in seconds.
    segments : ndarray of shape (n_segments, 2)
        Segment intervals in seconds.
    with_std : bool
        Also return the overlap-weighted standard deviation, appended after the mean.

    Returns
    -------
    PooledVideo
    """
    n_segments, width = segments.shape[0], features.shape[1]
    out_width = 2 * width if with_std else width
    values = np.full((n_segments, out_width), np.nan)
    finite = np.isfinite(features)
    nonfinite = int(finite.size - np.count_nonzero(finite))
    if features.shape[0] == 0 or n_segments == 0:
        return PooledVideo(values, np.zeros(n_segments, dtype=bool), nonfinite)

    weights = overlap_weights(segments, frames)
    has_frames = weights.sum(axis=1) > 0
    # Only frames that count for some segment take part in the products below; labelled
    # segments often cover a small part of a long video.
    used = weights.any(axis=0)
    if not used.any():
        return PooledVideo(values, has_frames, nonfinite)
    if not used.all():
        weights = weights[:, used]
        features = features[used]
        finite = finite[used]

    if not with_std and finite.all():
        # Fastest path: the plain weighted mean, with no mask and no shift (the shift below
        # serves the variance only).
        totals = weights.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[:] = (weights @ features.astype(np.float64)) / totals
        values[~has_frames] = np.nan
        return PooledVideo(values, has_frames, nonfinite)

    # Shifting by the video's finite column mean keeps E[x^2] - E[x]^2 exact enough even
    # for OpenFace columns near 1e5; masked cells become 0 and get no weight below.
    x = features.astype(np.float64)
    if finite.all():
        # Fast path: no mask, so every feature has the same denominator per segment.
        shift = x.mean(axis=0)
        centred = x - shift
        denominator = np.broadcast_to(weights.sum(axis=1, keepdims=True), (n_segments, width))
    else:
        with np.errstate(invalid="ignore"):
            finite_count = finite.sum(axis=0)
            shift = np.where(
                finite_count > 0, np.where(finite, x, 0.0).sum(axis=0) / np.maximum(finite_count, 1), 0.0
            )
        centred = np.where(finite, x - shift, 0.0)
        denominator = weights @ finite.astype(np.float64)

    numerator = weights @ centred
    defined = denominator > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_centred = np.where(defined, numerator / denominator, np.nan)
    values[:, :width] = mean_centred + shift

    if with_std:
        with np.errstate(invalid="ignore", divide="ignore"):
            second = np.where(defined, (weights @ (centred * centred)) / denominator, np.nan)
        values[:, width:] = np.sqrt(np.clip(second - mean_centred**2, 0.0, None))

    values[~has_frames] = np.nan
    return PooledVideo(values, has_frames, nonfinite)


@dataclass
class SegmentTable:
    """Pooled, not yet normalised segments of a whole dataset, before the split is applied.

    Attributes
    ----------
    ids : ndarray of shape (n,), str
        Segment ids ``"video[k]"``.
    videos : ndarray of shape (n,), str
        Video id of each segment.
    labels : ndarray of shape (n,), float64
        Sentiment in [-3, 3]; every value is finite.
    features : dict of str to ndarray of shape (n, d_m), float64
        Pooled features per modality in the file's units, NaN where undefined.
    has_frames : dict of str to ndarray of shape (n,), bool
        Whether the segment had frames in that modality.
    splits : ndarray of shape (n,), str, or None
        Split of each segment when the source format fixes it (pickles), else None.
    report : dict
        Counts gathered while reading (JSON-serialisable).
    """

    ids: np.ndarray
    videos: np.ndarray
    labels: np.ndarray
    features: dict[str, np.ndarray]
    has_frames: dict[str, np.ndarray]
    splits: np.ndarray | None
    report: dict
