"""Typed, validated configurations of a training run and their YAML form.

`TrainConfig` contains everything that shapes adapter training (the searched hyperparameters
and the fixed ones), `SourceModelConfig` the frozen source model, and `RunParams` a whole
run: both datasets, the source model, the training config and free-form ``meta`` written by
the search's export. Every value is checked when the object is built; an invalid one raises
`ConfigError` naming the key, the allowed range and the value. ``from_dict(to_dict(x)) == x``
holds for every valid object, also through YAML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters import MODALITIES
from adapters.datasets import read_yaml_file
from adapters.errors import ConfigError, config_errors_prefixed
from adapters.io import atomic_write_text

__all__ = [
    "DEFAULT_SOURCE_MODEL",
    "NORMS",
    "OBJECTIVES",
    "OBJECTIVE_SETTINGS",
    "ORIGINAL_SETTINGS",
    "RunParams",
    "SourceModelConfig",
    "TrainConfig",
    "dump_params",
    "load_params",
]

OBJECTIVES = ("prototype-mse", "sinkhorn", "moments")
# TrainConfig fields that only some objectives read, by objective. The others ignore them, so
# a search samples them only in trials whose objective reads them.
OBJECTIVE_SETTINGS: dict[str, frozenset[str]] = {
    "prototype-mse": frozenset({"n_clusters", "prototype_samples"}),
    "sinkhorn": frozenset({"n_clusters", "prototype_samples", "sinkhorn_reg", "sinkhorn_iterations"}),
    "moments": frozenset(),
}
NORMS = ("layer", "batch", "none")


# --- value checks -------------------------------------------------------------------------
# Each check takes (owner, key, value) and returns the normalised value or raises ConfigError.


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _integer(low: int, high: int | None = None) -> Callable[[str, str, Any], int]:
    allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"

    def check(owner: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{owner}.{key} must be {allowed}, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            raise ConfigError(f"{owner}.{key} must be {allowed}, got {value}")
        return value

    check.allowed = allowed  # type: ignore[attr-defined]
    return check


def _real(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str, str, Any], float]:
    allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(owner: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}.{key} must be {allowed}, got {_describe(value)}")
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise ConfigError(f"{owner}.{key} must be {allowed}, got {value}")
        return value

    return check


def _choice(options: tuple[str, ...]) -> Callable[[str, str, Any], str]:
    def check(owner: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ConfigError(f"{owner}.{key} must be one of {', '.join(options)}; got {value!r}")
        return value

    return check


def _modalities(owner: str, key: str, value: Any) -> tuple[str, ...]:
    allowed = f"a non-empty list of distinct names from {', '.join(MODALITIES)}"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{owner}.{key} must be {allowed}, got {_describe(value)}")
    names = tuple(value)
    if not names or len(set(names)) != len(names) or any(name not in MODALITIES for name in names):
        raise ConfigError(f"{owner}.{key} must be {allowed}, got {list(names)!r}")
    return names


def _optional_path(owner: str, key: str, value: Any) -> Path | None:
    if value is None:
        return None
    if isinstance(value, (str, Path)) and str(value):
        return Path(value)
    raise ConfigError(f"{owner}.{key} must be a file path or null, got {_describe(value)}")


def _validate(instance: Any, owner: str, checks: Mapping[str, Callable[[str, str, Any], Any]]) -> None:
    for key, check in checks.items():
        # Frozen dataclass: normalised values (int -> float, list -> tuple) go in via object.__setattr__.
        object.__setattr__(instance, key, check(owner, key, getattr(instance, key)))


def _reject_unknown(owner: str, mapping: Mapping[str, Any], known: set[str]) -> None:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{owner} must be a mapping of keys to values, got {_describe(mapping)}")
    unknown = sorted(str(key) for key in mapping if key not in known)
    if unknown:
        raise ConfigError(
            f"unknown {owner} key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}"
        )


# --- training config ----------------------------------------------------------------------

_TRAIN_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "objective": _choice(OBJECTIVES),
    "lr": _real(0.0, 1.0, low_open=True),
    "weight_decay": _real(0.0, 1.0),
    "clip_norm": _real(0.0, 1e6, low_open=True),
    "scheduler_factor": _real(0.0, 1.0, low_open=True, high_open=True),
    "scheduler_patience": _integer(0, 1000),
    "epochs": _integer(1, 10000),
    "batch_size": _integer(1, 1 << 16),
    "n_clusters": _integer(1, 4096),
    "prototype_samples": _integer(1, 1 << 24),
    "labelled_fraction": _real(0.0, 1.0),
    "task_weight": _real(0.0, 1e6),
    "align_weight": _real(0.0, 1e6),
    "hidden": _integer(1, 1 << 16),
    "depth": _integer(1, 16),
    "dropout": _real(0.0, 1.0, high_open=True),
    "norm": _choice(NORMS),
    "sinkhorn_reg": _real(0.0, 100.0, low_open=True),
    "sinkhorn_iterations": _integer(1, 100000),
    "seed": _integer(0, 2**32 - 1),
    "seeds": _integer(1, 100),
    "modalities": _modalities,
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one adapter training run.

    Attributes
    ----------
    objective : alignment loss, one of ``OBJECTIVES``.
    lr, weight_decay : Adam settings, one optimiser over all adapters.
    clip_norm : maximum global gradient norm per step.
    scheduler_factor, scheduler_patience : ReduceLROnPlateau on the epoch's training loss.
    epochs, batch_size : passes over the MOSI training rows and rows per step.
    n_clusters, prototype_samples : K-means prototypes per modality, fitted on at most
        ``prototype_samples`` MOSEI training rows.
    labelled_fraction : share of MOSI training rows whose labels the task loss uses (0: none).
    task_weight, align_weight : weights of the supervised loss and of the summed alignment losses.
    hidden, depth, dropout, norm : adapter MLP shape (``depth`` linear layers).
    sinkhorn_reg : entropic regularisation relative to the mean transport cost.
    sinkhorn_iterations : Sinkhorn iterations per step.
    seed : seed of initialisation, shuffling, prototype sampling and the labelled subset.
    seeds : number of seeds the search averages a trial over (seed, seed+1, ...).
    modalities : modalities adapted and fed to the source model, in this order.
    """

    objective: str = "prototype-mse"
    lr: float = 5e-4
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    scheduler_factor: float = 0.7
    scheduler_patience: int = 5
    epochs: int = 50
    batch_size: int = 32
    n_clusters: int = 16
    prototype_samples: int = 2000
    labelled_fraction: float = 0.0
    task_weight: float = 1.0
    align_weight: float = 1.0
    hidden: int = 256
    depth: int = 2
    dropout: float = 0.1
    norm: str = "layer"
    sinkhorn_reg: float = 0.05
    sinkhorn_iterations: int = 100
    seed: int = 0
    seeds: int = 1
    modalities: tuple[str, ...] = MODALITIES

    def __post_init__(self) -> None:
        _validate(self, "train", _TRAIN_CHECKS)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a mapping; missing keys keep their defaults.

        Raises
        ------
        ConfigError
            On an unknown key, a wrong type or a value out of range.
        """
        _reject_unknown("train", mapping, {f.name for f in dataclasses.fields(cls)})
        return cls(**dict(mapping))

    def to_dict(self) -> dict[str, Any]:
        """Return plain YAML/JSON types (``modalities`` as a list)."""
        values = dataclasses.asdict(self)
        values["modalities"] = list(self.modalities)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a validated copy with `changes` applied."""
        _reject_unknown("train", changes, {f.name for f in dataclasses.fields(self)})
        return dataclasses.replace(self, **changes)


# The first prototype-based version of the original training script: adapters pulled toward
# K-means prototypes of 2000 MOSEI rows with plain MSE, 50 epochs of Adam at 5e-4 with weight
# decay 1e-5, gradient clipping at 1.0 and ReduceLROnPlateau (factor 0.7, patience 5), no labels.
# NOTE: the original script's cluster count and adapter shape are not recorded; the values here
# are the class defaults.
ORIGINAL_SETTINGS = TrainConfig()


# --- source model config ------------------------------------------------------------------

_SOURCE_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "hidden": _integer(1, 1 << 16),
    "fusion_hidden": _integer(1, 1 << 16),
    "dropout": _real(0.0, 1.0, high_open=True),
    "epochs": _integer(1, 10000),
    "lr": _real(0.0, 1.0, low_open=True),
    "weight_decay": _real(0.0, 1.0),
    "batch_size": _integer(1, 1 << 16),
    "patience": _integer(1, 10000),
    "seed": _integer(0, 2**32 - 1),
    "torchscript": _optional_path,
}


@dataclass(frozen=True)
class SourceModelConfig:
    """Shape and training of the frozen source (MOSEI) model.

    Attributes
    ----------
    hidden : width of each modality encoder (Linear, LayerNorm, ReLU, dropout).
    fusion_hidden : width of the fusion head's hidden layer.
    dropout : dropout in encoders and head while training.
    epochs, lr, weight_decay, batch_size : Adam training on MOSEI train.
    patience : epochs without a better MOSEI-valid MAE before training stops.
    seed : seed of initialisation and shuffling.
    torchscript : a TorchScript file to use instead of training one; it takes one tensor per
        modality in MOSEI's normalised space, positionally in the run's modality order, and
        returns predictions of shape (n,) or (n, 1).
    """

    hidden: int = 128
    fusion_hidden: int = 128
    dropout: float = 0.1
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 64
    patience: int = 10
    seed: int = 0
    torchscript: Path | None = None

    def __post_init__(self) -> None:
        _validate(self, "source_model", _SOURCE_CHECKS)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], base_dir: Path | None = None) -> SourceModelConfig:
        """Build a config from a mapping; a relative ``torchscript`` path is taken from `base_dir`."""
        _reject_unknown("source_model", mapping, {f.name for f in dataclasses.fields(cls)})
        values = dict(mapping)
        script = values.get("torchscript")
        if isinstance(script, (str, Path)) and str(script) and base_dir is not None:
            path = Path(script).expanduser()
            values["torchscript"] = path if path.is_absolute() else Path(base_dir) / path
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return plain YAML/JSON types (the TorchScript path as a string)."""
        values = dataclasses.asdict(self)
        values["torchscript"] = str(self.torchscript) if self.torchscript is not None else None
        return values


DEFAULT_SOURCE_MODEL = SourceModelConfig()


# --- whole-run parameters -----------------------------------------------------------------

_RUN_KEYS = {"source", "target", "source_model", "train", "meta"}


@dataclass(frozen=True)
class RunParams:
    """Everything needed to repeat a training run: data, source model, training, provenance.

    ``meta`` is free-form and JSON-able (study, trial, metrics, fingerprints, version); the
    training never reads it.
    """

    source: Any  # adapters.datasets.DatasetConfig
    target: Any  # adapters.datasets.DatasetConfig
    source_model: SourceModelConfig = field(default_factory=SourceModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], base_dir: Path) -> RunParams:
        """Build run parameters; relative data paths are taken from `base_dir`."""
        from adapters.datasets import DatasetConfig

        _reject_unknown("params", mapping, _RUN_KEYS)
        for key in ("source", "target"):
            if key not in mapping:
                raise ConfigError(f"params key {key!r} is missing; add the {key} dataset configuration")
        meta = mapping.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise ConfigError(f"params.meta must be a mapping, got {_describe(meta)}")
        return cls(
            source=DatasetConfig.from_dict(mapping["source"], base_dir),
            target=DatasetConfig.from_dict(mapping["target"], base_dir),
            source_model=SourceModelConfig.from_dict(mapping.get("source_model") or {}, base_dir),
            train=TrainConfig.from_dict(mapping.get("train") or {}),
            meta=dict(meta),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return plain YAML types in the order source, target, source_model, train, meta."""
        return {
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "source_model": self.source_model.to_dict(),
            "train": self.train.to_dict(),
            "meta": dict(self.meta),
        }


def _read_yaml_mapping(path: Path) -> Mapping[str, Any]:
    mapping = read_yaml_file(
        path,
        "parameter file",
        missing_hint="pass the file written by 'adaptsearch best --export'",
        folder_hint="pass the file written by 'adaptsearch best --export'",
    )
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"parameter file {path} must contain a mapping at the top level")
    return mapping


def load_params(path: str | Path) -> RunParams:
    """Read a ``params.yaml`` file; relative paths in it are taken from its folder."""
    path = Path(path)
    mapping = _read_yaml_mapping(path)
    with config_errors_prefixed(str(path)):
        return RunParams.from_dict(mapping, path.resolve().parent)


def dump_yaml(mapping: Mapping[str, Any]) -> str:
    """Return `mapping` as block-style YAML with keys in insertion order."""
    return yaml.safe_dump(dict(mapping), sort_keys=False, default_flow_style=False, allow_unicode=True)


def dump_params(params: RunParams, path: str | Path, force: bool = False) -> Path:
    """Write `params` to `path` atomically.

    Raises
    ------
    ConfigError
        If `path` exists and `force` is False.
    """
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass force=True (--force) to overwrite it")
    atomic_write_text(path, dump_yaml(params.to_dict()))
    return path
