"""Assign whole videos to the train, valid and test splits.

Every split kind works on video ids, never on segments, so the segments of one video
always land in one split. Videos that no split names are excluded from the prepared data
and reported by name.

* ``standard``: the CMU Multimodal SDK's standard folds (``standard_train_fold``,
  ``standard_valid_fold``, ``standard_test_fold`` of ``mmsdk.mmdatasdk.cmu_mosi`` or
  ``cmu_mosei``); needs the optional ``sdk`` extra.
* ``file``: a JSON file ``{"train": [...], "valid": [...], "test": [...]}`` of video ids.
* ``grouped``: the sorted video ids shuffled with ``seed`` and cut by ``fractions``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from adapters.datasets import SPLIT_NAMES, SplitConfig
from adapters.errors import ConfigError, DataError


def standard_folds(dataset: str) -> dict[str, list[str]]:
    """Return the SDK's standard folds of ``"mosi"`` or ``"mosei"`` as split -> video ids."""
    try:
        from mmsdk.mmdatasdk import cmu_mosei, cmu_mosi
    except ImportError:
        raise ConfigError(
            "split kind 'standard' needs the CMU Multimodal SDK; run pip install 'adaptsearch[sdk]' "
            "or use split kind 'file' with a JSON list of videos per split"
        ) from None
    folds = {"mosi": cmu_mosi, "mosei": cmu_mosei}[dataset].standard_folds
    return {
        "train": list(folds.standard_train_fold),
        "valid": list(folds.standard_valid_fold),
        "test": list(folds.standard_test_fold),
    }


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """Read a JSON split file ``{"train": [...], "valid": [...], "test": [...]}``."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"split file {path} not found; check split.path") from None
    except json.JSONDecodeError as error:
        raise DataError(f"split file {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or set(document) != set(SPLIT_NAMES):
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise DataError(f"split file {path} must have exactly the keys train, valid, test; got {keys}")
    for name in SPLIT_NAMES:
        if not isinstance(document[name], list) or not all(isinstance(v, str) for v in document[name]):
            raise DataError(f"split file {path}: {name!r} must be a list of video id strings")
    return {name: list(document[name]) for name in SPLIT_NAMES}


def grouped_folds(videos: Iterable[str], seed: int, fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    """Split video ids at random with a fixed seed; train takes the rounding remainder."""
    ordered = sorted(set(videos))
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order]
    n_valid = int(round(fractions[1] * len(shuffled)))
    n_test = int(round(fractions[2] * len(shuffled)))
    n_train = len(shuffled) - n_valid - n_test
    return {
        "train": shuffled[:n_train],
        "valid": shuffled[n_train : n_train + n_valid],
        "test": shuffled[n_train + n_valid :],
    }


def assign_videos(config: SplitConfig, videos: Iterable[str], folder: str | Path) -> tuple[dict[str, str], list[str]]:
    """Map each video to its split.

    Parameters
    ----------
    config : SplitConfig
    videos : iterable of str
        Video ids present in the data.
    folder : path
        Dataset folder that a relative split-file path is resolved against.

    Returns
    -------
    assignment : dict of str to str
        Video id to ``"train"``, ``"valid"`` or ``"test"``.
    unassigned : list of str
        Videos of the data that no split names (sorted); they are excluded.
    """
    videos = sorted(set(videos))
    if config.kind == "standard":
        folds = standard_folds(config.dataset)
        where = f"the SDK's standard {config.dataset} folds"
    elif config.kind == "file":
        path = Path(config.path)
        path = path if path.is_absolute() else Path(folder) / path
        folds = read_split_file(path)
        where = f"split file {path}"
    else:
        folds = grouped_folds(videos, config.seed, config.fractions)
        where = "the grouped split"

    assignment: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for video in folds[name]:
            previous = assignment.setdefault(video, name)
            if previous != name:
                raise DataError(f"{where} puts video {video!r} in both {previous} and {name}; fix the split")
    present = {v: assignment[v] for v in videos if v in assignment}
    unassigned = [v for v in videos if v not in assignment]
    return present, unassigned
