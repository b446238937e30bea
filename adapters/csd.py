"""Read CMU Multimodal SDK computational sequences (``.csd``) and pool them per segment.

A ``.csd`` file is HDF5 with the layout::

    /<root>/data/<video_id>/features    (frames, dims)   any width
    /<root>/data/<video_id>/intervals   (frames, 2)      start and end in seconds
    /<root>/metadata/<key>              string datasets

The label file is a computational sequence too: one row per labelled segment, its interval
and its label columns. Segment ``k`` of a video (row ``k`` of that video in the label file)
gets the id ``"video[k]"``, as in the SDK's aligned data.

Files are read one video at a time, so memory is bounded by the largest video. Every
structural fault raises `DataError` naming the file and the video: a missing or ambiguous
root group, an empty file, features that are not 2-D, features and intervals with different
row counts, NaN or reversed intervals, widths that change between videos, and sentiment
labels outside [-3, 3]. A NaN label drops its segment and is counted; it never becomes 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from adapters.datasets import DatasetConfig
from adapters.errors import DataError
from adapters.pooling import SegmentTable, pool_video

logger = logging.getLogger(__name__)

SENTIMENT_RANGE = (-3.0, 3.0)


@dataclass
class CsdFile:
    """An open computational sequence: its path, root group name and ``data`` group."""

    path: Path
    root: str
    data: h5py.Group

    def videos(self) -> list[str]:
        """Return the video ids in the file, sorted."""
        return sorted(self.data.keys())

    def width(self) -> int:
        """Return the feature width, checking that every video has the same one."""
        widths: dict[int, str] = {}
        for video in self.data:
            shape = self._entry(video, "features").shape
            if len(shape) != 2:
                raise DataError(
                    f"{self.path}: video {video!r} has features of shape {shape}, expected 2-D "
                    "(frames, dims); re-export the file"
                )
            widths.setdefault(shape[1], video)
        if not widths:
            raise DataError(f"{self.path}: group /{self.root}/data contains no videos; the file is empty")
        if len(widths) > 1:
            listed = ", ".join(f"{width} (video {video!r})" for width, video in sorted(widths.items()))
            raise DataError(f"{self.path}: videos have different feature widths: {listed}")
        return next(iter(widths))

    def _entry(self, video: str, name: str) -> h5py.Dataset:
        group = self.data[video]
        if not isinstance(group, h5py.Group) or name not in group:
            raise DataError(f"{self.path}: video {video!r} has no {name!r} dataset; the file is not a .csd")
        return group[name]

    def read(self, video: str) -> tuple[np.ndarray, np.ndarray]:
        """Read and check one video.

        Returns
        -------
        features : ndarray of shape (frames, dims)
        intervals : ndarray of shape (frames, 2), float64, seconds
        """
        features = self._entry(video, "features")[()]
        intervals = self._entry(video, "intervals")[()]
        where = f"{self.path}: video {video!r}"
        if features.ndim != 2:
            raise DataError(f"{where} has features of shape {features.shape}, expected 2-D (frames, dims)")
        if intervals.ndim != 2 or intervals.shape[1] != 2:
            raise DataError(f"{where} has intervals of shape {intervals.shape}, expected (frames, 2)")
        if features.shape[0] != intervals.shape[0]:
            raise DataError(
                f"{where} has {features.shape[0]} feature rows but {intervals.shape[0]} interval rows; "
                "the file is inconsistent, re-export it"
            )
        intervals = intervals.astype(np.float64)
        bad = ~np.isfinite(intervals).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where} has a non-finite interval at row {row}: {intervals[row].tolist()}")
        reversed_rows = intervals[:, 1] < intervals[:, 0]
        if reversed_rows.any():
            row = int(np.flatnonzero(reversed_rows)[0])
            raise DataError(
                f"{where} has a reversed interval at row {row}: end {intervals[row, 1]} < start {intervals[row, 0]}"
            )
        return features, intervals


@contextmanager
def open_csd(path: str | Path, root: str | None = None) -> Iterator[CsdFile]:
    """Open a ``.csd`` file read-only and find its root group.

    Parameters
    ----------
    path : path
        The computational sequence.
    root : str or None
        Root group name; None means the file's only top-level group.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset folder and file name")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 (.csd) file: {error}") from None
    try:
        groups = sorted(handle.keys())
        if root is None:
            if not groups:
                raise DataError(f"{path}: file has no top-level group; it is empty")
            if len(groups) > 1:
                raise DataError(
                    f"{path}: file has several top-level groups ({', '.join(groups)}); "
                    "name the one to read under 'roots' in the dataset section"
                )
            root = groups[0]
        elif root not in handle:
            raise DataError(f"{path}: root group {root!r} not found; the file holds {', '.join(groups) or 'nothing'}")
        if not isinstance(handle[root], h5py.Group) or "data" not in handle[root]:
            raise DataError(f"{path}: group /{root} has no 'data' group; the file is not a .csd")
        yield CsdFile(path, root, handle[root]["data"])
    finally:
        handle.close()


@dataclass
class LabelRows:
    """The labelled segments of one video.

    Attributes
    ----------
    rows : ndarray of shape (n,), int
        Row index of each segment in the video's label rows (the ``k`` of ``"video[k]"``).
    intervals : ndarray of shape (n, 2), float64
        Segment start and end in seconds.
    values : ndarray of shape (n,), float64
        Sentiment labels.
    """

    rows: np.ndarray
    intervals: np.ndarray
    values: np.ndarray


def read_labels(path: str | Path, root: str | None, column: int) -> tuple[dict[str, LabelRows], int, int]:
    """Read the sentiment column of a label ``.csd`` file.

    Returns
    -------
    labels : dict of str to LabelRows
        Finite labels per video, videos sorted.
    total : int
        Number of label rows in the file.
    nan_rows : int
        Rows dropped because their label is NaN.
    """
    labels: dict[str, LabelRows] = {}
    total = nan_rows = 0
    with open_csd(path, root) as csd:
        for video in csd.videos():
            features, intervals = csd.read(video)
            if features.shape[1] <= column:
                raise DataError(
                    f"{csd.path}: video {video!r} has {features.shape[1]} label columns, so label_column "
                    f"{column} does not exist; set label_column to 0..{features.shape[1] - 1}"
                )
            values = features[:, column].astype(np.float64)
            total += len(values)
            is_nan = np.isnan(values)
            outside = ~is_nan & ((values < SENTIMENT_RANGE[0]) | (values > SENTIMENT_RANGE[1]))
            if outside.any():
                row = int(np.flatnonzero(outside)[0])
                raise DataError(
                    f"{csd.path}: video {video!r} row {row} has sentiment {values[row]} outside [-3, 3] "
                    f"in column {column}; check label_column"
                )
            nan_rows += int(is_nan.sum())
            keep = ~is_nan
            labels[video] = LabelRows(np.flatnonzero(keep), intervals[keep], values[keep])
    if nan_rows:
        logger.warning("%s: dropped %d label rows whose sentiment is NaN", path, nan_rows)
    return labels, total, nan_rows


def pool_csd_dataset(config: DatasetConfig) -> SegmentTable:
    """Read a csd dataset and pool every modality onto its labelled segments.

    Segments keep the label file's order (videos sorted, rows in file order). A labelled
    video absent from a modality file gets no frames in that modality; its name is listed
    in ``report["videos_missing"][modality]`` and logged.

    Returns
    -------
    SegmentTable
        ``splits`` is None; `adapters.prepare` assigns them from the split config.
    """
    labels, total, nan_rows = read_labels(config.path_of(config.labels), config.roots.get("labels"), config.label_column)
    if not labels:
        raise DataError(f"{config.path_of(config.labels)}: the label file contains no videos; it is empty")
    videos_sorted = sorted(labels)
    counts = np.array([len(labels[v].values) for v in videos_sorted], dtype=np.int64)
    ids = np.array([f"{v}[{k}]" for v in videos_sorted for k in labels[v].rows], dtype=str)
    videos = np.repeat(np.array(videos_sorted, dtype=str), counts)
    label_values = (
        np.concatenate([labels[v].values for v in videos_sorted]) if videos_sorted else np.zeros(0)
    )
    offsets = np.concatenate([[0], np.cumsum(counts)])

    report: dict = {
        "label_rows": total,
        "videos_missing": {},
        "videos_unlabelled": {},
        "nonfinite_values": {},
        "nonfinite_share": {},
        "dropped": {"label_nan": nan_rows},
    }
    features: dict[str, np.ndarray] = {}
    has_frames: dict[str, np.ndarray] = {}
    with_std = config.pooling == "mean+std"
    for modality, file_name in config.modalities.items():
        with open_csd(config.path_of(file_name), config.roots.get(modality)) as csd:
            width = csd.width()
            in_file = set(csd.data.keys())
            missing = [v for v in videos_sorted if v not in in_file]
            unlabelled = sorted(in_file - set(labels))
            if videos_sorted and len(missing) == len(videos_sorted):
                raise DataError(
                    f"{csd.path}: none of the {len(videos_sorted)} labelled videos is in this {modality} file "
                    f"(labels name e.g. {videos_sorted[0]!r}, the file holds e.g. {sorted(in_file)[0]!r}); "
                    "the video ids must match those of the label file"
                )
            if missing:
                logger.warning(
                    "%s: %d labelled videos are missing from the %s file: %s",
                    config.name, len(missing), modality, ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
                )
            if unlabelled:
                logger.info("%s: %d videos of the %s file have no labels", config.name, len(unlabelled), modality)

            out = np.full((len(ids), 2 * width if with_std else width), np.nan)
            present = np.zeros(len(ids), dtype=bool)
            nonfinite = 0
            values_read = 0
            for index, video in enumerate(videos_sorted):
                if video not in in_file:
                    continue
                frame_features, frame_intervals = csd.read(video)
                pooled = pool_video(frame_features, frame_intervals, labels[video].intervals, with_std=with_std)
                start, stop = offsets[index], offsets[index + 1]
                out[start:stop] = pooled.values
                present[start:stop] = pooled.has_frames
                nonfinite += pooled.nonfinite
                values_read += frame_features.size

        features[modality] = out
        has_frames[modality] = present
        report["videos_missing"][modality] = missing
        report["videos_unlabelled"][modality] = unlabelled
        report["nonfinite_values"][modality] = nonfinite
        report["nonfinite_share"][modality] = nonfinite / values_read if values_read else 0.0
    return SegmentTable(ids, videos, label_values, features, has_frames, None, report)
