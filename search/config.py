"""Study configuration: the data, the source model, the fixed settings, the space and the pruner.

A study config file is YAML::

    source: {name: mosei, folder: data/mosei, ...}   # DatasetConfig section
    target: {name: mosi, folder: data/mosi, ...}     # DatasetConfig section
    source_model: {hidden: 128, epochs: 100}         # SourceModelConfig, optional
    fixed: {epochs: 30, seeds: 2}                    # TrainConfig fields every trial uses, optional
    space: space.yaml                                # a space file or an inline {parameters: ...}
    pruner: {threshold: 0.0, warmup_epochs: 5}       # NegativeCorrelationPruner settings, optional
    objectives: [valid_corr, valid_mae]              # optional; default [valid_corr]

``objectives`` is ``[valid_corr]`` (maximise the MOSI-valid correlation) or
``[valid_corr, valid_mae]`` (also minimise the MOSI-valid MAE of the same epoch, a
multi-objective study with a Pareto front). Optuna cannot prune multi-objective studies, so
their pruner is `optuna.pruners.NopPruner` and the ``pruner`` section is not used.

Relative paths (dataset folders, the space file, a TorchScript model) are taken from the
config file's folder. Without ``space`` the default space file is used.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from adapters.datasets import DatasetConfig, read_yaml_file
from adapters.errors import ConfigError, StudyError, config_errors_prefixed
from adapters.params import SourceModelConfig, TrainConfig
from search.pruner import NegativeCorrelationPruner
from search.space import PACKAGED_SPACE_FILE, SearchSpace, load_space
from search.subsets import decode_settings

logger = logging.getLogger(__name__)

_KEYS = ("source", "target", "source_model", "fixed", "space", "pruner", "objectives")

CORR_OBJECTIVE = "valid_corr"
MAE_OBJECTIVE = "valid_mae"
# Every objective a study may use, with its Optuna direction.
OBJECTIVE_DIRECTIONS = {CORR_OBJECTIVE: "maximize", MAE_OBJECTIVE: "minimize"}
SINGLE_OBJECTIVE = (CORR_OBJECTIVE,)
MULTI_OBJECTIVE = (CORR_OBJECTIVE, MAE_OBJECTIVE)
_ALLOWED_OBJECTIVES = (SINGLE_OBJECTIVE, MULTI_OBJECTIVE)


@dataclass(frozen=True)
class StudyConfig:
    """Settings that stay constant across a study's trials, plus the space it samples."""

    source: DatasetConfig
    target: DatasetConfig
    space: SearchSpace
    source_model: SourceModelConfig = field(default_factory=SourceModelConfig)
    fixed: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = SINGLE_OBJECTIVE

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", _check_objectives(self.objectives))
        TrainConfig.from_dict(self.fixed)
        NegativeCorrelationPruner.from_dict(self.pruner)
        for name, value in self.fixed.items():
            if name in self.space.params:
                raise ConfigError(
                    f"study config: {name!r} is both fixed (fixed: {value!r}) and searched by the space; "
                    "remove it from one of them"
                )
            if name in self.space.fixed and self.space.fixed[name] != value:
                raise ConfigError(
                    f"study config: {name!r} is fixed to {value!r} but the space fixes it to "
                    f"{self.space.fixed[name]!r}; keep one value"
                )

    @classmethod
    def from_dict(
        cls,
        mapping: Any,
        base_dir: str | Path,
        *,
        space_path: str | Path | None = None,
        default_space: str | Path | None = None,
    ) -> StudyConfig:
        """Build a config from a parsed YAML mapping.

        Parameters
        ----------
        mapping : mapping
            The sections listed in the module docstring; unknown keys raise `ConfigError`.
        base_dir : path
            Folder that relative paths are taken from.
        space_path : path or None
            A space file that replaces the config's ``space`` section (``--space``).
        default_space : path or None
            The space file used when neither `space_path` nor a ``space`` section is given;
            None means the packaged default space.
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"study config must be a mapping with keys {', '.join(_KEYS)}, got {type(mapping).__name__}")
        unknown = sorted(str(key) for key in set(mapping) - set(_KEYS))
        if unknown:
            raise ConfigError(f"study config: unknown key {unknown[0]!r}; allowed keys are {', '.join(_KEYS)}")
        for key in ("source", "target"):
            if key not in mapping:
                raise ConfigError(f"study config: section {key!r} is missing; add the {key} dataset")
        base_dir = Path(base_dir)

        fixed = mapping.get("fixed") or {}
        if not isinstance(fixed, Mapping):
            raise ConfigError(f"study config: 'fixed' must be a mapping of TrainConfig fields, got {fixed!r}")
        pruner = mapping.get("pruner") or {}
        if not isinstance(pruner, Mapping):
            raise ConfigError(f"study config: 'pruner' must be a mapping, got {pruner!r}")
        objectives = mapping.get("objectives", list(SINGLE_OBJECTIVE))
        if not isinstance(objectives, list):
            raise ConfigError(f"study config: 'objectives' must be a list such as [valid_corr, valid_mae], got {objectives!r}")

        return cls(
            source=DatasetConfig.from_dict(mapping["source"], base_dir, section="source"),
            target=DatasetConfig.from_dict(mapping["target"], base_dir, section="target"),
            source_model=SourceModelConfig.from_dict(mapping.get("source_model") or {}, base_dir),
            fixed=decode_settings(fixed),
            space=_read_space(mapping.get("space"), base_dir, space_path, default_space),
            pruner=dict(pruner),
            objectives=tuple(objectives),
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        space_path: str | Path | None = None,
        default_space: str | Path | None = None,
    ) -> StudyConfig:
        """Read and validate a study config file."""
        path = Path(path)
        mapping = read_yaml_file(
            path,
            "study config",
            missing_hint="pass an existing YAML file to --config",
            folder_hint="pass a YAML file to --config",
        )
        with config_errors_prefixed(str(path)):
            return cls.from_dict(mapping, path.resolve().parent, space_path=space_path, default_space=default_space)

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON/YAML types; the space is inlined."""
        return {
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "source_model": self.source_model.to_dict(),
            "fixed": dict(self.fixed),
            "space": self.space.to_dict(),
            "pruner": self.make_pruner().to_dict(),
            "objectives": list(self.objectives),
        }

    def base_train_config(self) -> TrainConfig:
        """Return the `TrainConfig` every trial starts from: defaults, then the fixed values."""
        return TrainConfig.from_dict({**self.space.fixed, **self.fixed})

    def train_config(self, sampled: Mapping[str, Any]) -> TrainConfig:
        """Return the full `TrainConfig` of a trial with the `sampled` values.

        A sampled modality subset string (``"visual+text"``) becomes the ``modalities`` tuple.
        """
        return self.base_train_config().replace(**decode_settings(sampled))

    def make_pruner(self) -> NegativeCorrelationPruner:
        return NegativeCorrelationPruner.from_dict(self.pruner)

    @property
    def multi_objective(self) -> bool:
        """True when the study also minimises the MOSI-valid MAE."""
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives, in `objectives` order."""
        return [OBJECTIVE_DIRECTIONS[name] for name in self.objectives]

    def with_objectives(self, objectives: tuple[str, ...]) -> StudyConfig:
        """Return a copy that optimises `objectives` (validated like the config key)."""
        return dataclasses.replace(self, objectives=tuple(objectives))

    def study_pruner(self) -> optuna.pruners.BasePruner:
        """Return the pruner a study runs with: `NopPruner` when it has several objectives."""
        if self.multi_objective:
            logger.info(
                "pruning is off: Optuna cannot prune a multi-objective study (%s), so every trial runs all its epochs",
                ", ".join(self.objectives),
            )
            return optuna.pruners.NopPruner()
        return self.make_pruner()

    def check_directions(self, study: optuna.Study) -> None:
        """Check that a stored `study` optimises as many objectives in the same directions.

        Optuna loads an existing study with its stored directions and ignores the requested
        ones, so a resume in the other mode would otherwise run silently in the stored mode.

        Raises
        ------
        StudyError
            If the stored directions differ from `directions`.
        """
        stored = [direction.name.lower() for direction in study.directions]
        if stored == self.directions:
            return
        stored_mode = "multi-objective" if len(stored) > 1 else "single-objective"
        requested_mode = "multi-objective" if self.multi_objective else "single-objective"
        if len(stored) > 1:
            resume = "add --multi-objective (or 'objectives: [valid_corr, valid_mae]' in the config) to resume it"
        else:
            resume = "leave out --multi-objective and the config's 'objectives' key to resume it"
        requested = ", ".join(f"{name} {direction}" for name, direction in zip(self.objectives, self.directions))
        raise StudyError(
            f"study {study.study_name!r} is {stored_mode} (directions {', '.join(stored)}) but this run is "
            f"{requested_mode} ({requested}); pass --study NEW to start a {requested_mode} study, or {resume}"
        )


def _check_objectives(objectives: Any) -> tuple[str, ...]:
    if isinstance(objectives, str) or not isinstance(objectives, (list, tuple)):
        raise ConfigError(f"study config: 'objectives' must be a list such as [valid_corr, valid_mae], got {objectives!r}")
    names = tuple(objectives)
    if names not in _ALLOWED_OBJECTIVES:
        allowed = " or ".join(f"[{', '.join(option)}]" for option in _ALLOWED_OBJECTIVES)
        raise ConfigError(f"study config: 'objectives' must be {allowed}, got {list(names)!r}")
    return names


def _read_space(
    section: Any, base_dir: Path, space_path: str | Path | None, default_space: str | Path | None
) -> SearchSpace:
    if space_path is not None:
        return load_space(space_path)
    if section is None:
        return load_space(default_space if default_space is not None else PACKAGED_SPACE_FILE)
    if isinstance(section, str):
        path = Path(section).expanduser()
        return load_space(path if path.is_absolute() else base_dir / path)
    if isinstance(section, Mapping):
        return SearchSpace.from_dict(section, source="study config 'space'")
    raise ConfigError(f"study config: 'space' must be a file name or a mapping, got {section!r}")
