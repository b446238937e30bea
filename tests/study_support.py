"""Helpers for the search-layer tests: a tiny study config and quick study runs."""

from __future__ import annotations

from pathlib import Path

import yaml

# A small space over quick settings: 4 epochs, small adapters, so a trial takes well under a second.
TINY_SPACE = {
    "parameters": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "n_clusters": {"type": "int", "low": 4, "high": 16},
        "objective": {"type": "categorical", "choices": ["prototype-mse", "moments"]},
        "epochs": {"fixed": 4},
        "hidden": {"fixed": 16},
        "batch_size": {"fixed": 16},
    }
}

# The threshold rule is off (-1) so that trial counts do not depend on which trials get pruned.
NO_PRUNING = {"threshold": -1.0, "median_startup_trials": 1000}


def write_study_config(folder: Path, world: dict, *, space: dict | None = None, pruner: dict | None = None) -> Path:
    """Write a study config YAML for the datasets of `world` into `folder`; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "source": world["source"].to_dict(),
        "target": world["target"].to_dict(),
        "source_model": {"epochs": 5, "hidden": 16, "fusion_hidden": 16},
        "space": space if space is not None else TINY_SPACE,
        "pruner": pruner if pruner is not None else NO_PRUNING,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
