"""Generate a synthetic demo world: a MOSEI-like source and a MOSI-like target dataset.

Both datasets are written as real CMU SDK computational sequences (``.csd``, HDF5 with
``/<root>/data/<video>/{features,intervals}`` and ``/<root>/metadata`` strings), with a
label ``.csd``, a JSON split file per dataset and a ``world.yaml`` holding the two
dataset sections. The loader cannot tell them from SDK files.

Generative model
----------------
Each segment has a sentiment ``y`` in [-3, 3]: a per-video offset plus per-segment noise,
clipped and rounded (to 1/3 for the MOSEI-like source, 0.2 for the MOSI-like target).
For every modality ``m`` a latent vector of 9 dimensions is drawn per segment::

    z_m = [a_m * y / 3 + 0.3 * noise   (2 dims),
           u_video  (4 dims, shared by the segments of one video: speaker and setting),
           u_segment (3 dims, per segment)]

with sentiment strength ``a_m`` = 1.0 (text), 0.7 (audio), 0.6 (visual), so sentiment
is recoverable from every modality. The nuisance ``u`` has no relation to ``y``.

* Source features: a fixed random linear map of ``z_m`` to the source width (visual 713
  like OpenFace 2, audio 74 like COVAREP, text 300 like GloVe), then a per-column scale
  (log-normal) and offset. 40 OpenFace-like columns have scales of 1e3 to 1e5.
* Target features: a different map, a two-layer tanh network of ``z_m`` (24 hidden units)
  to the target width (visual 65, audio 29, text 768), with its own column scales. An
  adapter from target to source therefore has to undo one nonlinear map and apply
  another.
* Frames: every segment gets 3 to 6 frames per modality whose intervals tile the segment.
  A frame is the segment vector plus noise (0.3 of the column scale), so the pooled mean
  is close to the segment vector.
* Faults like the real files: about 1% of source visual frames are NaN rows (OpenFace
  lost the face), and about 2% of source audio frames have ``-inf`` in two columns (a
  COVAREP log feature on silence).

Default sizes: target 93 videos, 1284/229/686 segments in train/valid/test (MOSI's split
sizes); source 300 videos with about 3500 labelled segments and a few unlabelled ones.
``size="tiny"`` makes a few dozen segments per dataset for tests. With a segment table
(CSV with columns ``video_id, segment, start, end, split, sentiment``) a dataset follows
the table exactly. A row with an empty sentiment gets frames but no label row.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from adapters import MODALITIES
from adapters.datasets import SPLIT_NAMES, DatasetConfig, load_dataset_configs
from adapters.errors import DataError
from adapters.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

SOURCE_WIDTHS = {"visual": 713, "audio": 74, "text": 300}
TARGET_WIDTHS = {"visual": 65, "audio": 29, "text": 768}
SENTIMENT_STRENGTH = {"visual": 0.6, "audio": 0.7, "text": 1.0}
SENTIMENT_DIMS, VIDEO_DIMS, SEGMENT_DIMS = 2, 4, 3
LATENT_DIMS = SENTIMENT_DIMS + VIDEO_DIMS + SEGMENT_DIMS
TARGET_HIDDEN = 24
FRAME_NOISE = 0.3

SOURCE_FILES = {
    "visual": ("CMU_MOSEI_VisualOpenFace2.csd", "OpenFace_2"),
    "audio": ("CMU_MOSEI_COVAREP.csd", "COVAREP"),
    "text": ("CMU_MOSEI_TimestampedWordVectors.csd", "glove_vectors"),
}
SOURCE_LABELS = ("CMU_MOSEI_Labels.csd", "All Labels")
TARGET_FILES = {
    "visual": ("DEMO_MOSI_Visual65.csd", "Visual65"),
    "audio": ("DEMO_MOSI_Audio29.csd", "Audio29"),
    "text": ("DEMO_MOSI_Text768.csd", "Text768"),
}
TARGET_LABELS = ("CMU_MOSI_Opinion_Labels.csd", "Opinion Segment Labels")

# (videos per split, segments per split) of the generated tables.
DEFAULT_SIZES = {
    "target": {"default": ((52, 10, 31), (1284, 229, 686)), "tiny": ((4, 2, 2), (24, 8, 8))},
    "source": {"default": ((213, 30, 57), (2630, 300, 770)), "tiny": ((5, 2, 2), (30, 10, 10))},
}
SOURCE_UNLABELLED_SHARE = 0.05

CSV_COLUMNS = ("video_id", "segment", "start", "end", "split", "sentiment")


@dataclass
class SegmentPlan:
    """The segments of one generated dataset, ordered by video and then by segment number.

    Attributes
    ----------
    videos : ndarray of shape (n,), str
    intervals : ndarray of shape (n, 2), float64, seconds
    splits : ndarray of shape (n,), str
    sentiment : ndarray of shape (n,), float64
        NaN for segments without a label row.
    """

    videos: np.ndarray
    intervals: np.ndarray
    splits: np.ndarray
    sentiment: np.ndarray


def read_segment_table(path: str | Path) -> SegmentPlan:
    """Read a segment CSV (``video_id, segment, start, end, split, sentiment``).

    Rows are ordered by video and then by segment number. An empty sentiment becomes NaN
    (the segment is generated but not labelled).
    """
    path = Path(path)
    try:
        stream = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"segment table {path} not found") from None
    with stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or tuple(reader.fieldnames) != CSV_COLUMNS:
            raise DataError(f"segment table {path} must have the columns {', '.join(CSV_COLUMNS)}; got {reader.fieldnames}")
        rows = []
        split_of: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            try:
                start, end, number = float(row["start"]), float(row["end"]), int(row["segment"])
                sentiment = float(row["sentiment"]) if row["sentiment"].strip() else math.nan
            except ValueError as error:
                raise DataError(f"segment table {path} line {line}: {error}") from None
            if not (math.isfinite(start) and math.isfinite(end)) or end < start:
                raise DataError(f"segment table {path} line {line}: invalid interval [{start}, {end}]")
            if row["split"] not in SPLIT_NAMES:
                raise DataError(f"segment table {path} line {line}: split must be train, valid or test, got {row['split']!r}")
            if not math.isnan(sentiment) and not -3.0 <= sentiment <= 3.0:
                raise DataError(f"segment table {path} line {line}: sentiment {sentiment} outside [-3, 3]")
            previous = split_of.setdefault(row["video_id"], row["split"])
            if previous != row["split"]:
                raise DataError(f"segment table {path}: video {row['video_id']!r} is in both {previous} and {row['split']}")
            rows.append((row["video_id"], number, start, end, row["split"], sentiment))
    if not rows:
        raise DataError(f"segment table {path} has no rows")
    rows.sort(key=lambda r: (r[0], r[1]))
    return SegmentPlan(
        videos=np.array([r[0] for r in rows], dtype=str),
        intervals=np.array([(r[2], r[3]) for r in rows], dtype=np.float64),
        splits=np.array([r[4] for r in rows], dtype=str),
        sentiment=np.array([r[5] for r in rows], dtype=np.float64),
    )


def _split_counts(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """Divide `total` segments among `parts` videos, each getting at least one."""
    shares = rng.dirichlet(np.full(parts, 2.0))
    counts = 1 + np.floor(shares * (total - parts)).astype(int)
    remainder = total - counts.sum()
    for index in rng.choice(parts, size=remainder, replace=True):
        counts[index] += 1
    return counts


def plan_segments(rng: np.random.Generator, kind: str, size: str) -> SegmentPlan:
    """Draw a segment table: videos per split, segments per video, intervals and sentiment."""
    video_counts, segment_counts = DEFAULT_SIZES[kind][size]
    prefix = "mosei" if kind == "source" else "mosi"
    videos, intervals, splits = [], [], []
    index = 0
    for split, n_videos, n_segments in zip(SPLIT_NAMES, video_counts, segment_counts):
        for count in _split_counts(rng, n_segments, n_videos):
            video = f"{prefix}{index:04d}"
            index += 1
            durations = rng.uniform(1.5, 8.0, size=count)
            gaps = rng.uniform(0.0, 1.5, size=count)
            starts = rng.uniform(0.0, 5.0) + np.cumsum(gaps + np.concatenate([[0.0], durations[:-1]]))
            videos += [video] * count
            intervals.append(np.stack([starts, starts + durations], axis=1))
            splits += [split] * count
    videos_array = np.array(videos, dtype=str)
    sentiment = _draw_sentiment(rng, videos_array, step=1 / 3 if kind == "source" else 0.2)
    if kind == "source":
        sentiment[rng.random(len(sentiment)) < SOURCE_UNLABELLED_SHARE] = np.nan
    return SegmentPlan(videos_array, np.concatenate(intervals), np.array(splits, dtype=str), sentiment)


def _draw_sentiment(rng: np.random.Generator, videos: np.ndarray, step: float) -> np.ndarray:
    _, video_index = np.unique(videos, return_inverse=True)
    offsets = rng.normal(0.0, 1.0, size=video_index.max() + 1)
    raw = np.clip(offsets[video_index] + rng.normal(0.0, 1.1, size=len(videos)), -3.0, 3.0)
    return np.round(raw / step) * step


def _latents(rng: np.random.Generator, plan: SegmentPlan, sentiment: np.ndarray) -> dict[str, np.ndarray]:
    """Draw z_m of shape (n, LATENT_DIMS) per modality (see the module docstring)."""
    _, video_index = np.unique(plan.videos, return_inverse=True)
    n_videos = video_index.max() + 1
    latents = {}
    for modality in MODALITIES:
        signal = SENTIMENT_STRENGTH[modality] * sentiment[:, None] / 3.0
        signal = signal + 0.3 * rng.normal(size=(len(sentiment), SENTIMENT_DIMS))
        per_video = rng.normal(size=(n_videos, VIDEO_DIMS))[video_index]
        per_segment = rng.normal(size=(len(sentiment), SEGMENT_DIMS))
        latents[modality] = np.concatenate([signal, per_video, per_segment], axis=1)
    return latents


def _column_scales(rng: np.random.Generator, width: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    scale = np.exp(rng.normal(0.0, spread, size=width))
    offset = rng.normal(0.0, 2.0, size=width) * scale
    return scale, offset


def _source_map(rng: np.random.Generator, modality: str, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map latents (n, LATENT_DIMS) linearly to source features; return features and column scales."""
    width = SOURCE_WIDTHS[modality]
    weights = rng.normal(size=(LATENT_DIMS, width)) / math.sqrt(LATENT_DIMS)
    scale, offset = _column_scales(rng, width, 1.0)
    if modality == "visual":
        huge = rng.choice(width, size=40, replace=False)
        scale[huge] = 10.0 ** rng.uniform(3.0, 5.0, size=40)
        offset[huge] = rng.uniform(0.0, 1.0, size=40) * scale[huge]
    return (latents @ weights) * scale + offset, scale


def _target_map(rng: np.random.Generator, modality: str, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map latents nonlinearly (two tanh layers) to target features; return features and scales."""
    width = TARGET_WIDTHS[modality]
    first = rng.normal(size=(LATENT_DIMS, TARGET_HIDDEN)) * 1.5 / math.sqrt(LATENT_DIMS)
    bias = rng.normal(0.0, 0.5, size=TARGET_HIDDEN)
    second = rng.normal(size=(TARGET_HIDDEN, width)) / math.sqrt(TARGET_HIDDEN)
    hidden = np.tanh(latents @ first + bias)
    scale, offset = _column_scales(rng, width, 0.7)
    return np.tanh(hidden @ second) * scale + offset, scale


def _frames(rng: np.random.Generator, intervals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tile each segment with 3 to 6 frames; return the segment index and interval of each frame."""
    counts = rng.integers(3, 7, size=len(intervals))
    owner = np.repeat(np.arange(len(intervals)), counts)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    length = (intervals[owner, 1] - intervals[owner, 0]) / counts[owner]
    start = intervals[owner, 0] + position * length
    return owner, np.stack([start, start + length], axis=1)


def _metadata(root: str, dataset: str, description: str) -> dict[str, str]:
    # The keys of the SDK's featureset metadata template, all stored as strings.
    return {
        "root name": root,
        "computational sequence description": description,
        "computational sequence version": "1.0",
        "alignment compatible": "True",
        "dataset name": dataset,
        "dataset version": "1.0",
        "creator": "adaptsearch demo world",
        "contact": "none",
        "featureset bib citation": "synthetic data",
        "dataset bib citation": "synthetic data",
        "uuid": "00000000-0000-0000-0000-000000000000",
        "md5": "None",
    }


def write_csd(
    path: str | Path,
    root: str,
    entries: dict[str, tuple[np.ndarray, np.ndarray]],
    metadata: dict[str, str],
) -> None:
    """Write a computational sequence in the SDK layout.

    Parameters
    ----------
    path : path
    root : str
        Root group name.
    entries : dict of str to (features, intervals)
        Per video: features of shape (frames, dims) and intervals of shape (frames, 2).
    metadata : dict of str to str
        Stored as one-element variable-length string datasets, as the SDK does.
    """
    strings = h5py.string_dtype()
    # Written under a temporary name and renamed, so that a search reading an earlier world in
    # the same folder never opens a half-written file.
    with atomic_path(path, suffix=".csd") as temporary, h5py.File(temporary, "w") as handle:
        data = handle.create_group(f"{root}/data")
        for video, (features, intervals) in entries.items():
            group = data.create_group(video)
            group.create_dataset("features", data=features)
            group.create_dataset("intervals", data=intervals)
        meta = handle.create_group(f"{root}/metadata")
        for key, value in metadata.items():
            meta.create_dataset(key, shape=(1,), dtype=strings, data=[str(value)])


def _by_video(videos: np.ndarray, *arrays: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """Group rows (already ordered by video) into per-video slices."""
    names, starts = np.unique(videos, return_index=True)
    order = np.argsort(starts)
    names, starts = names[order], starts[order]
    stops = np.append(starts[1:], len(videos))
    return {str(n): tuple(a[s:e] for a in arrays) for n, s, e in zip(names, starts, stops)}


def _write_dataset(
    rng: np.random.Generator,
    folder: Path,
    kind: str,
    plan: SegmentPlan,
) -> dict:
    """Write the feature, label and split files of one dataset; return its YAML section."""
    folder.mkdir(parents=True, exist_ok=True)
    is_source = kind == "source"
    files = SOURCE_FILES if is_source else TARGET_FILES
    corpus = "CMU_MOSEI (synthetic)" if is_source else "CMU_MOSI (synthetic)"
    # Unlabelled segments still carry frames, as in the real corpora.
    sentiment_for_features = np.where(np.isnan(plan.sentiment), 0.0, plan.sentiment)
    latents = _latents(rng, plan, sentiment_for_features)

    for modality in MODALITIES:
        mapper = _source_map if is_source else _target_map
        segment_features, scale = mapper(rng, modality, latents[modality])
        owner, frame_intervals = _frames(rng, plan.intervals)
        frames = segment_features[owner] + FRAME_NOISE * scale * rng.normal(size=(len(owner), len(scale)))
        frames = frames.astype(np.float32)
        if is_source and modality == "visual":
            frames[rng.random(len(frames)) < 0.01] = np.nan
        if is_source and modality == "audio":
            frames[rng.random(len(frames)) < 0.02, :2] = -np.inf
        file_name, root = files[modality]
        write_csd(
            folder / file_name,
            root,
            _by_video(plan.videos[owner], frames, frame_intervals),
            _metadata(root, corpus, f"synthetic {modality} features, width {frames.shape[1]}"),
        )

    labelled = ~np.isnan(plan.sentiment)
    if is_source:
        label_columns = [plan.sentiment[labelled]]
        for _ in range(6):
            emotion = np.clip(rng.normal(0.4, 0.6, size=labelled.sum()) + 0.2 * plan.sentiment[labelled], 0.0, 3.0)
            label_columns.append(np.round(emotion * 3) / 3)
        labels = np.stack(label_columns, axis=1)
        label_file, label_root = SOURCE_LABELS
    else:
        labels = plan.sentiment[labelled][:, None]
        label_file, label_root = TARGET_LABELS
    write_csd(
        folder / label_file,
        label_root,
        _by_video(plan.videos[labelled], labels.astype(np.float32), plan.intervals[labelled]),
        _metadata(label_root, corpus, "sentiment labels" + (" and six emotions" if is_source else "")),
    )

    video_split = dict(zip(plan.videos.tolist(), plan.splits.tolist()))
    folds = {name: sorted(v for v, s in video_split.items() if s == name) for name in SPLIT_NAMES}
    atomic_write_text(folder / "splits.json", json.dumps(folds, indent=1) + "\n")

    return {
        "name": "demo-mosei" if is_source else "demo-mosi",
        "format": "csd",
        "folder": folder.name,
        "modalities": {m: files[m][0] for m in MODALITIES},
        "labels": label_file,
        "label_column": 0,
        "roots": {**{m: files[m][1] for m in MODALITIES}, "labels": label_root},
        "pooling": "mean",
        "missing": "drop",
        "split": {"kind": "file", "path": "splits.json"},
    }


def write_demo_world(
    out_dir: str | Path,
    *,
    segments_csv: str | Path | None = None,
    source_segments_csv: str | Path | None = None,
    seed: int = 0,
    size: str = "default",
) -> dict[str, DatasetConfig]:
    """Write the demo world into `out_dir` (see the module docstring for the model).

    Parameters
    ----------
    out_dir : path
        Created when missing; ``source/``, ``target/`` and ``world.yaml`` are written in it.
    segments_csv : path or None
        Segment table that the target (MOSI-like) dataset follows exactly.
    source_segments_csv : path or None
        Segment table that the source (MOSEI-like) dataset follows exactly.
    seed : int
        Seed of every random draw; the same seed gives the same files.
    size : {"default", "tiny"}
        Generated table size when no CSV is given; ``tiny`` is a few dozen segments.

    Returns
    -------
    dict
        ``{"source": DatasetConfig, "target": DatasetConfig}`` read back from ``world.yaml``.
    """
    if size not in ("default", "tiny"):
        raise DataError(f"size must be 'default' or 'tiny', got {size!r}")
    out_dir = Path(out_dir)
    # NOTE: one generator draws both plans and then both datasets' features. A target
    # segment table (--segments) replaces the target plan's draws, so the source features
    # drawn after it differ from the default world's. Separate generators would change every
    # default world and the figures recorded from it.
    rng = np.random.default_rng(seed)
    # Both tables are read before anything is written, so a bad table fails fast and leaves
    # no folder behind.
    plans = {
        kind: read_segment_table(table) if table is not None else plan_segments(rng, kind, size)
        for kind, table in (("source", source_segments_csv), ("target", segments_csv))
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "a file of that name exists" if out_dir.exists() else error.strerror
        raise DataError(f"cannot create the demo folder {out_dir}: {reason}; pass a folder that can be created") from None
    sections = {}
    for kind, plan in plans.items():
        sections[kind] = _write_dataset(rng, out_dir / kind, kind, plan)
        logger.info(
            "wrote demo %s dataset: %d segments, %d of them labelled, in %s",
            kind, len(plan.videos), int(np.count_nonzero(~np.isnan(plan.sentiment))), out_dir / kind,
        )
    atomic_write_text(out_dir / "world.yaml", yaml.safe_dump(sections, sort_keys=False))
    return load_dataset_configs(out_dir / "world.yaml")


def ensure_demo_world(studies_dir: str | Path) -> dict[str, DatasetConfig]:
    """Return the demo world under ``studies_dir/demo-world``, generating it on first use.

    The world is generated in a temporary folder and renamed into place, so a concurrent
    or interrupted call never leaves a half-written world. When two processes race, the
    first rename wins and the other's copy is removed.
    """
    studies_dir = Path(studies_dir)
    world = studies_dir / "demo-world"
    if not (world / "world.yaml").is_file():
        studies_dir.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-demo-world-", dir=studies_dir))
        try:
            write_demo_world(temporary)
            try:
                os.rename(temporary, world)
            except OSError:
                if not (world / "world.yaml").is_file():
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return load_dataset_configs(world / "world.yaml")
