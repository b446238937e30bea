"""Read MMSA or MulT aligned pickles as a second input format.

The pickle is a dict ``{"train": ..., "valid": ..., "test": ...}``; each split is a dict
with the arrays ``"vision"``, ``"audio"``, ``"text"`` of shape (n, T, d), the labels under
``"regression_labels"`` (MMSA, shape (n,)) or ``"labels"`` (MulT, shape (n, 1, 1) or
(n, 1)), and the segment ids under ``"id"``.

Pickles can run arbitrary code when loaded, so `RestrictedUnpickler` resolves only the
globals that rebuilding numpy arrays, dtypes and scalars needs, and raises `DataError`
naming any other global (``os.system``, ``builtins.eval``, ...). ``_codecs.encode`` is
allowed because protocol-2 pickles store bytes through it; it only encodes a string.

Pooling over time is the mean over the time axis, leaving out padded steps: a step whose
features are all exactly zero is padding (the aligned pickles zero-pad short segments).
A segment whose steps are all padding has no frames in that modality (dropped or imputed
like a ``.csd`` segment without frames). Non-finite values are masked per feature and
counted as in ``.csd`` pooling. The split is the pickle's own.

Video ids come from the segment ids: ``"video[k]"``, ``"video$_$k"``, or an id array
row whose first entry is the video; any other id is its own video.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path

import numpy as np

from adapters.datasets import SPLIT_NAMES, DatasetConfig
from adapters.errors import DataError
from adapters.pooling import SegmentTable

logger = logging.getLogger(__name__)

PICKLE_KEYS = {"visual": "vision", "audio": "audio", "text": "text"}
LABEL_KEYS = ("regression_labels", "labels")

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays, dtypes and scalars need."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"pickle refers to the global {module}.{name}, which is not needed for numpy arrays; "
                "refusing to load it because unpickling it could run code"
            )
        return super().find_class(module, name)


def load_pickle(path: str | Path) -> object:
    """Load a pickle with `RestrictedUnpickler`."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"pickle {path} not found; check the dataset folder and 'pickle'") from None
    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a readable pickle: {error}") from None


def pool_steps(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Average the non-padding time steps of each segment, masking non-finite values.

    Parameters
    ----------
    steps : ndarray of shape (n, T, d)

    Returns
    -------
    pooled : ndarray of shape (n, d), float64
        NaN where a feature has no finite value in a segment's steps.
    has_frames : ndarray of shape (n,), bool
        Whether the segment has a step that is not all zeros.
    nonfinite : int
        Number of non-finite values in the non-padding steps.
    """
    x = steps.astype(np.float64)
    real = ~(x == 0).all(axis=2)
    finite = np.isfinite(x) & real[:, :, None]
    count = finite.sum(axis=1)
    total = np.where(finite, x, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    nonfinite = int((~np.isfinite(x) & real[:, :, None]).sum())
    return pooled, real.any(axis=1), nonfinite


def _video_of(segment_id: object) -> tuple[str, str]:
    if isinstance(segment_id, np.ndarray):
        parts = [p.decode() if isinstance(p, bytes) else str(p) for p in segment_id.ravel()]
        return (f"{parts[0]}[{parts[1]}]" if len(parts) > 1 else parts[0]), parts[0]
    text = segment_id.decode() if isinstance(segment_id, bytes) else str(segment_id)
    match = re.fullmatch(r"(.+)\[(\d+)\]", text) or re.fullmatch(r"(.+)\$_\$(\d+)", text)
    return text, match.group(1) if match else text


def _labels(split: dict, name: str, path: Path, n: int) -> np.ndarray:
    key = next((k for k in LABEL_KEYS if k in split), None)
    if key is None:
        raise DataError(f"{path}: split {name!r} has no labels; expected one of {', '.join(LABEL_KEYS)}")
    labels = np.asarray(split[key], dtype=np.float64)
    if labels.shape not in ((n,), (n, 1), (n, 1, 1)):
        raise DataError(f"{path}: split {name!r} has labels of shape {labels.shape}, expected ({n},), ({n}, 1) or ({n}, 1, 1)")
    return labels.reshape(n)


def read_pickle_dataset(config: DatasetConfig) -> SegmentTable:
    """Read an MMSA/MulT pickle into a `SegmentTable` that keeps the pickle's split."""
    path = config.path_of(config.pickle)
    document = load_pickle(path)
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a dict of splits, got {type(document).__name__}")
    missing = [name for name in SPLIT_NAMES if name not in document]
    if missing:
        raise DataError(f"{path}: split(s) {', '.join(missing)} missing; the pickle must hold train, valid and test")

    ids, videos, labels, splits = [], [], [], []
    features = {m: [] for m in config.modalities}
    has_frames = {m: [] for m in config.modalities}
    nonfinite = dict.fromkeys(config.modalities, 0)
    values_read = dict.fromkeys(config.modalities, 0)
    nan_labels = 0
    for name in SPLIT_NAMES:
        split = document[name]
        if not isinstance(split, dict) or "id" not in split:
            raise DataError(f"{path}: split {name!r} must be a dict with an 'id' array")
        n = len(split["id"])
        split_labels = _labels(split, name, path, n)
        outside = np.isfinite(split_labels) & ((split_labels < -3) | (split_labels > 3))
        if outside.any() or np.isinf(split_labels).any():
            row = int(np.flatnonzero(outside | np.isinf(split_labels))[0])
            raise DataError(f"{path}: split {name!r} segment {row} has sentiment {split_labels[row]} outside [-3, 3]")
        keep = ~np.isnan(split_labels)
        nan_labels += int((~keep).sum())

        for modality in config.modalities:
            key = PICKLE_KEYS[modality]
            if key not in split:
                raise DataError(f"{path}: split {name!r} has no {key!r} array for modality {modality}")
            steps = np.asarray(split[key])
            if steps.ndim != 3 or steps.shape[0] != n:
                raise DataError(
                    f"{path}: split {name!r} array {key!r} has shape {steps.shape}, expected ({n}, T, d) "
                    f"to match {n} ids"
                )
            pooled, present, count = pool_steps(steps[keep])
            features[modality].append(pooled)
            has_frames[modality].append(present)
            nonfinite[modality] += count
            values_read[modality] += steps[keep].size

        for segment_id in np.asarray(split["id"], dtype=object)[keep]:
            segment, video = _video_of(segment_id)
            ids.append(segment)
            videos.append(video)
        labels.append(split_labels[keep])
        splits += [name] * int(keep.sum())

    widths = {m: {f.shape[1] for f in features[m]} for m in config.modalities}
    for modality, found in widths.items():
        if len(found) > 1:
            raise DataError(f"{path}: modality {modality} has different widths across splits: {sorted(found)}")

    videos_array = np.array(videos, dtype=str)
    split_array = np.array(splits, dtype=str)
    crossing = sorted({v for v in np.unique(videos_array) if len(np.unique(split_array[videos_array == v])) > 1})
    if crossing:
        logger.warning(
            "%s: %d videos have segments in more than one split of the pickle: %s",
            path, len(crossing), ", ".join(crossing[:20]),
        )
    report = {
        "label_rows": len(ids) + nan_labels,
        "dropped": {"label_nan": nan_labels},
        "videos_missing": {m: [] for m in config.modalities},
        "videos_unlabelled": {m: [] for m in config.modalities},
        "videos_in_several_splits": crossing,
        "nonfinite_values": nonfinite,
        "nonfinite_share": {m: nonfinite[m] / values_read[m] if values_read[m] else 0.0 for m in config.modalities},
    }
    return SegmentTable(
        ids=np.array(ids, dtype=str),
        videos=videos_array,
        labels=np.concatenate(labels),
        features={m: np.concatenate(features[m]) for m in config.modalities},
        has_frames={m: np.concatenate(has_frames[m]) for m in config.modalities},
        splits=split_array,
        report=report,
    )
