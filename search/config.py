"""Study configuration: the data, the source model, the fixed settings, the space and the pruner.

A study config file is YAML::

    source: {name: mosei, folder: data/mosei, ...}   # DatasetConfig section
    target: {name: mosi, folder: data/mosi, ...}     # DatasetConfig section
    source_model: {hidden: 128, epochs: 100}         # SourceModelConfig, optional
    fixed: {epochs: 30, seeds: 2}                    # TrainConfig fields every trial uses, optional
    space: space.yaml                                # a space file or an inline {parameters: ...}
    pruner: {threshold: 0.0, warmup_epochs: 5}       # NegativeCorrelationPruner settings, optional

Relative paths (dataset folders, the space file, a TorchScript model) are taken from the
config file's folder. Without ``space`` the default space file is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.datasets import DatasetConfig
from adapters.errors import ConfigError
from adapters.params import SourceModelConfig, TrainConfig
from search.pruner import NegativeCorrelationPruner
from search.space import PACKAGED_SPACE_FILE, SearchSpace, load_space

_KEYS = ("source", "target", "source_model", "fixed", "space", "pruner")


@dataclass(frozen=True)
class StudyConfig:
    """Settings that stay constant across a study's trials, plus the space it samples."""

    source: DatasetConfig
    target: DatasetConfig
    space: SearchSpace
    source_model: SourceModelConfig = field(default_factory=SourceModelConfig)
    fixed: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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

        return cls(
            source=DatasetConfig.from_dict(mapping["source"], base_dir),
            target=DatasetConfig.from_dict(mapping["target"], base_dir),
            source_model=SourceModelConfig.from_dict(mapping.get("source_model") or {}, base_dir),
            fixed=dict(fixed),
            space=_read_space(mapping.get("space"), base_dir, space_path, default_space),
            pruner=dict(pruner),
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
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"study config {path} not found; pass an existing YAML file to --config") from None
        try:
            mapping = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"study config {path} is not valid YAML: {error}") from None
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
        }

    def base_train_config(self) -> TrainConfig:
        """Return the `TrainConfig` every trial starts from: defaults, then the fixed values."""
        return TrainConfig.from_dict({**self.space.fixed, **self.fixed})

    def train_config(self, sampled: Mapping[str, Any]) -> TrainConfig:
        """Return the full `TrainConfig` of a trial with the `sampled` values."""
        return self.base_train_config().replace(**dict(sampled))

    def make_pruner(self) -> NegativeCorrelationPruner:
        return NegativeCorrelationPruner.from_dict(self.pruner)


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
