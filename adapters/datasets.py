"""Dataset descriptions: which files hold a dataset's features, labels and split.

A dataset is one YAML section, read into a frozen `DatasetConfig`. Every value is checked
when the section is read, so a typo fails before any file is opened. Relative paths are
resolved against the folder of the YAML file (``folder``) and then against ``folder``
(feature, label, pickle and split files).

Example section::

    name: mosi
    format: csd
    folder: data/mosi
    modalities: {visual: CMU_MOSI_Visual_Facet_41.csd, audio: CMU_MOSI_COVAREP.csd}
    labels: CMU_MOSI_Opinion_Labels.csd
    label_column: 0
    split: {kind: standard, dataset: mosi}
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters import MODALITIES
from adapters.errors import ConfigError, config_errors_prefixed

FORMATS = ("csd", "mmsa-pickle")
POOLINGS = ("mean", "mean+std")
MISSING_POLICIES = ("drop", "impute")
SPLIT_KINDS = ("standard", "file", "grouped")
STANDARD_DATASETS = ("mosi", "mosei")
SPLIT_NAMES = ("train", "valid", "test")


def _reject_unknown_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(allowed))}"
        )


def _require_choice(value: Any, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How the videos of a dataset are divided into train, valid and test.

    Attributes
    ----------
    kind : {"standard", "file", "grouped"}
        ``standard``: the CMU Multimodal SDK's standard folds of ``dataset``.
        ``file``: a JSON file ``{"train": [video ids], "valid": [...], "test": [...]}``.
        ``grouped``: a seeded random split of whole videos with the given ``fractions``.
    dataset : {"mosi", "mosei"} or None
        Corpus whose standard folds are used (kind ``standard`` only).
    path : str or None
        JSON split file, relative to the dataset folder (kind ``file`` only).
    seed : int
        Random seed of the grouped split.
    fractions : tuple of three floats
        Train, valid and test shares of the videos (kind ``grouped``); they sum to 1.
    """

    kind: str
    dataset: str | None = None
    path: str | None = None
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)

    def __post_init__(self) -> None:
        _require_choice(self.kind, SPLIT_KINDS, "split.kind")
        if self.kind == "standard":
            _require_choice(self.dataset, STANDARD_DATASETS, "split.dataset")
        elif self.dataset is not None:
            raise ConfigError(f"split.dataset is only used with kind 'standard', got kind {self.kind!r}")
        if self.kind == "file":
            if not isinstance(self.path, str) or not self.path:
                raise ConfigError(f"split.path must name a JSON split file for kind 'file', got {self.path!r}")
        elif self.path is not None:
            raise ConfigError(f"split.path is only used with kind 'file', got kind {self.kind!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"split.seed must be an integer, got {self.seed!r}")
        fractions = tuple(self.fractions)
        if len(fractions) != 3 or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in fractions
        ):
            raise ConfigError(f"split.fractions must be three numbers in [0, 1], got {self.fractions!r}")
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6) or fractions[0] == 0.0:
            raise ConfigError(
                f"split.fractions must sum to 1 with a non-zero train share, got {self.fractions!r}"
            )
        object.__setattr__(self, "fractions", tuple(float(x) for x in fractions))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> SplitConfig:
        """Build a split description from a YAML mapping, rejecting unknown keys."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"split must be a mapping with a 'kind' key, got {mapping!r}")
        _reject_unknown_keys(mapping, {f.name for f in dataclasses.fields(cls)}, "split")
        if "kind" not in mapping:
            raise ConfigError("split.kind is missing; use one of " + ", ".join(SPLIT_KINDS))
        values = dict(mapping)
        if "fractions" in values:
            if not isinstance(values["fractions"], (list, tuple)):
                raise ConfigError(f"split.fractions must be a list of three numbers, got {values['fractions']!r}")
            values["fractions"] = tuple(values["fractions"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain mapping that `from_dict` reads back, without unused keys."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "standard":
            out["dataset"] = self.dataset
        if self.kind == "file":
            out["path"] = self.path
        if self.kind == "grouped":
            out["seed"] = self.seed
            out["fractions"] = list(self.fractions)
        return out


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """Where a dataset's files are and how its segments are pooled and split.

    Attributes
    ----------
    name : str
        Short name, used in the prepared-cache file name and in reports.
    format : {"csd", "mmsa-pickle"}
        CMU SDK computational sequences, or an MMSA/MulT aligned pickle.
    folder : Path
        Base folder of the relative file names below (absolute after `from_dict`).
    modalities : dict of str to str
        Modality (a non-empty subset of ``adapters.MODALITIES``) to its ``.csd`` file.
        For the pickle format the values are ignored but the keys choose the modalities.
    labels : str or None
        Label ``.csd`` file (csd format); one row per labelled segment.
    label_column : int
        Column of the label file that contains sentiment in [-3, 3] (0 in MOSEI "All Labels").
    roots : dict of str to str
        Modality or ``"labels"`` to the root group name in its file; a file not named here
        must have exactly one top-level group.
    pooling : {"mean", "mean+std"}
        Overlap-weighted mean of the frames in a segment, or mean and std (double width).
    missing : {"drop", "impute"}
        What happens to a segment that has no frames in some modality.
    split : SplitConfig or None
        Required for the csd format; the pickle format carries its own split.
    pickle : str or None
        The pickle file (mmsa-pickle format).
    """

    name: str
    format: str = "csd"
    folder: Path
    modalities: dict[str, str]
    labels: str | None = None
    label_column: int = 0
    roots: dict[str, str] = field(default_factory=dict)
    pooling: str = "mean"
    missing: str = "drop"
    split: SplitConfig | None = None
    pickle: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"name must be a non-empty string without '/', got {self.name!r}")
        _require_choice(self.format, FORMATS, "format")
        _require_choice(self.pooling, POOLINGS, "pooling")
        _require_choice(self.missing, MISSING_POLICIES, "missing")
        object.__setattr__(self, "folder", Path(self.folder))
        self._check_modalities()
        if isinstance(self.label_column, bool) or not isinstance(self.label_column, int) or self.label_column < 0:
            raise ConfigError(f"label_column must be an integer >= 0, got {self.label_column!r}")
        if not isinstance(self.roots, Mapping):
            raise ConfigError(f"roots must be a mapping of modality or 'labels' to a group name, got {self.roots!r}")
        for key, value in self.roots.items():
            if key not in (*MODALITIES, "labels"):
                raise ConfigError(f"roots: key must be a modality or 'labels', got {key!r}")
            if not isinstance(value, str) or not value:
                raise ConfigError(f"roots.{key} must be a non-empty group name, got {value!r}")
        object.__setattr__(self, "roots", dict(self.roots))
        if self.format == "csd":
            if not isinstance(self.labels, str) or not self.labels:
                raise ConfigError(f"labels must name the label .csd file for format 'csd', got {self.labels!r}")
            if self.split is None:
                raise ConfigError("split is missing; give {kind: standard|file|grouped, ...} for format 'csd'")
            if self.pickle is not None:
                raise ConfigError("pickle is only used with format 'mmsa-pickle'; remove it or change format")
        else:
            if not isinstance(self.pickle, str) or not self.pickle:
                raise ConfigError(f"pickle must name the pickle file for format 'mmsa-pickle', got {self.pickle!r}")
            if self.split is not None:
                raise ConfigError(
                    "split is not used with format 'mmsa-pickle' because the pickle carries its own "
                    "train/valid/test; remove the split section"
                )
        if self.split is not None and not isinstance(self.split, SplitConfig):
            raise ConfigError(f"split must be a SplitConfig, got {self.split!r}")

    def _check_modalities(self) -> None:
        if not isinstance(self.modalities, Mapping) or not self.modalities:
            raise ConfigError(
                f"modalities must be a non-empty mapping of modality to file, got {self.modalities!r}"
            )
        for modality, file_name in self.modalities.items():
            if modality not in MODALITIES:
                raise ConfigError(f"modalities: unknown modality {modality!r}; use {', '.join(MODALITIES)}")
            if not isinstance(file_name, str) or (self.format == "csd" and not file_name):
                raise ConfigError(f"modalities.{modality} must be a file name, got {file_name!r}")
        ordered = {m: self.modalities[m] for m in MODALITIES if m in self.modalities}
        object.__setattr__(self, "modalities", ordered)

    def path_of(self, file_name: str) -> Path:
        """Return `file_name` resolved against the dataset folder."""
        path = Path(file_name)
        return path if path.is_absolute() else self.folder / path

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], base_dir: str | Path = ".", *, section: str | None = None) -> DatasetConfig:
        """Build a dataset description from a YAML mapping.

        Parameters
        ----------
        mapping : mapping
            One dataset section; unknown keys raise `ConfigError` naming the key.
        base_dir : path
            Folder that a relative ``folder`` is resolved against (the YAML file's folder).
        section : str or None
            The section's key in its file (``source``, ``target``), named in every error.
        """
        where = "dataset" if section is None else f"dataset section {section!r}"
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(mapping).__name__}")
        _reject_unknown_keys(mapping, {f.name for f in dataclasses.fields(cls)}, where)
        values = dict(mapping)
        if values.get("format") == "mmsa-pickle":
            # A pickle contains all three modalities under fixed keys, so `modalities` only
            # chooses among them. Left out, it means all three, and a list names a subset.
            modalities = values.get("modalities", list(MODALITIES))
            if isinstance(modalities, list):
                values["modalities"] = {str(modality): "" for modality in modalities}
        for key in ("name", "folder", "modalities"):
            if key not in values:
                raise ConfigError(f"{where}: key {key!r} is missing")
        with config_errors_prefixed(where) if section is not None else contextlib.nullcontext():
            folder = Path(str(values["folder"])).expanduser()
            values["folder"] = (folder if folder.is_absolute() else Path(base_dir) / folder).resolve()
            if values.get("split") is not None:
                values["split"] = SplitConfig.from_dict(values["split"])
            if values.get("roots") is None:
                values["roots"] = {}
            return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain mapping (strings, numbers, lists) that `from_dict` reads back."""
        out: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "folder": str(self.folder),
            "modalities": dict(self.modalities),
        }
        if self.labels is not None:
            out["labels"] = self.labels
        out["label_column"] = self.label_column
        if self.roots:
            out["roots"] = dict(self.roots)
        out["pooling"] = self.pooling
        out["missing"] = self.missing
        if self.split is not None:
            out["split"] = self.split.to_dict()
        if self.pickle is not None:
            out["pickle"] = self.pickle
        return out


def yaml_error_line(error: yaml.YAMLError) -> str:
    """Return a YAML parse error as one line: the problem and where it is.

    PyYAML's own message spans several lines (the context, a copy of the line and a caret),
    which would break the CLI's one-line error.
    """
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def read_yaml_file(path: Path, what: str, *, missing_hint: str, folder_hint: str) -> Any:
    """Read and parse a YAML file, raising `ConfigError` that names `what` and `path` on failure.

    The hints finish the messages for a missing path and for a folder given as the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found; {missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; {folder_hint}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"cannot read {what} {path}: {reason}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_error_line(error)}") from None


# Keys that only a dataset section has at its top level, so a file containing one is a single section.
SECTION_MARKERS = frozenset({"modalities", "folder", "format", "labels", "pickle", "split"})


def load_dataset_configs(path: str | Path) -> dict[str, DatasetConfig]:
    """Read dataset sections from a YAML file.

    The file is either one dataset section (it has a key such as ``modalities``, ``folder``
    or ``format`` at the top) or a mapping of section names (for example ``source`` and
    ``target``) to dataset sections. Every value of such a mapping must be a valid section:
    a misspelt key fails here rather than leaving its dataset out.

    Returns
    -------
    dict of str to DatasetConfig
        Section name (the dataset's own name for a single section) to its description.
    """
    path = Path(path)
    return dataset_configs_from_document(read_dataset_file(path), path)


def read_dataset_file(path: Path) -> Any:
    """Read and parse a dataset YAML file, raising `ConfigError` that names the path on failure."""
    return read_yaml_file(
        path,
        "dataset file",
        missing_hint="check the path",
        folder_hint="pass a dataset YAML file (e.g. world.yaml) or a prepared .h5 file",
    )


def dataset_configs_from_document(document: Any, path: Path) -> dict[str, DatasetConfig]:
    """Build the dataset sections of the parsed YAML `document` of the file at `path`, as `load_dataset_configs` does."""
    if not isinstance(document, Mapping) or not document:
        raise ConfigError(
            f"dataset file {path} must contain a mapping (one dataset section, or sections such as source: and "
            f"target:), got {type(document).__name__ if document is not None else 'an empty file'}"
        )
    base_dir = path.resolve().parent
    with config_errors_prefixed(str(path)):
        if SECTION_MARKERS & set(document):
            config = DatasetConfig.from_dict(document, base_dir)
            return {config.name: config}
        return {str(key): DatasetConfig.from_dict(value, base_dir, section=str(key)) for key, value in document.items()}
