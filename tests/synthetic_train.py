"""Small synthetic source/target datasets for the training-core tests.

Both datasets share a latent sentiment ``z``. Each modality's features are a linear map of
``z`` plus noise, with different maps and widths in source and target, as with different
feature extractors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adapters.prepare import PreparedData, Split

SOURCE_WIDTHS = {"visual": 6, "audio": 5, "text": 8}
TARGET_WIDTHS = {"visual": 4, "audio": 3, "text": 7}


def make_split(rng, widths, projections, n, name, split, noise=0.3):
    z = rng.uniform(-3, 3, size=n).astype(np.float32)
    features = {
        modality: (np.outer(z / 3.0, projections[modality]) + noise * rng.standard_normal((n, width))).astype(np.float32)
        for modality, width in widths.items()
    }
    labels = np.round(z * 2) / 2
    labels = labels.astype(np.float32)
    ids = np.array([f"{name}{split}{i // 3}[{i % 3}]" for i in range(n)])
    videos = np.array([f"{name}{split}{i // 3}" for i in range(n)])
    return Split(features=features, labels=labels, ids=ids, videos=videos)


def make_data(name, widths, *, seed, sizes=(60, 20, 20), fingerprint=None, report=None) -> PreparedData:
    rng = np.random.default_rng(seed)
    projections = {modality: rng.standard_normal(width).astype(np.float32) * 2 for modality, width in widths.items()}
    splits = {
        split: make_split(rng, widths, projections, n, name, split)
        for split, n in zip(("train", "valid", "test"), sizes)
    }
    # Normalise with the training statistics, as preparation does.
    mean = {m: splits["train"].features[m].mean(axis=0) for m in widths}
    std = {m: splits["train"].features[m].std(axis=0) + 1e-6 for m in widths}
    for split in splits.values():
        for modality in widths:
            split.features[modality] = ((split.features[modality] - mean[modality]) / std[modality]).astype(np.float32)
    return PreparedData(
        name=name,
        fingerprint=fingerprint or f"{name}-{seed}-{sizes}",
        modalities=tuple(widths),
        widths=dict(widths),
        splits=splits,
        mean=mean,
        std=std,
        report=report if report is not None else {"nonfinite_share": {m: 0.0 for m in widths}},
        path=Path(f"/nonexistent/{name}.h5"),
    )


def make_pair(seed: int = 0, source_sizes=(200, 60, 60), target_sizes=(60, 20, 20)):
    """Return (source, target) PreparedData with the widths above."""
    return (
        make_data("mosei-synthetic", SOURCE_WIDTHS, seed=seed, sizes=source_sizes),
        make_data("mosi-synthetic", TARGET_WIDTHS, seed=seed + 100, sizes=target_sizes),
    )
