"""The search space: which `TrainConfig` fields a study samples, and over which ranges.

A space file is YAML with one top-level key, ``parameters``, that maps `TrainConfig` field
names to one of:

- ``{type: float, low: L, high: H, log: bool, step: S}`` (``log`` and ``step`` optional),
- ``{type: int, low: L, high: H, log: bool, step: S}``,
- ``{type: categorical, choices: [...]}`` (choices are None, bool, int, float or str),
  where ``modalities`` choices are subsets such as ``[visual, text]`` or ``"visual+text"``
  (see `search.subsets`),
- ``{fixed: VALUE}`` or a bare scalar or list, which every trial uses unchanged.

Settings that only some alignment objectives read (`adapters.params.OBJECTIVE_SETTINGS`,
such as ``n_clusters``) are sampled only in trials whose objective reads them. A trial with
``objective: moments`` has no ``n_clusters`` parameter.

Every entry is checked when the file is loaded: unknown keys, wrong types, ``low > high``,
a log range that touches 0, an empty or duplicated choice list, and values that
`TrainConfig.from_dict` itself rejects all raise `ConfigError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from adapters.datasets import read_yaml_file
from adapters.errors import ConfigError
from adapters.params import OBJECTIVE_SETTINGS
from adapters.io import atomic_write_text
from adapters.params import TrainConfig
from search.subsets import FIELD as SUBSET_FIELD
from search.subsets import SubsetParam, decode_settings

SPACE_FILE_NAME = "space.yaml"
# The default space, shipped inside the package; studies/space.yaml in the repository is a copy.
PACKAGED_SPACE_FILE = Path(__file__).with_name(SPACE_FILE_NAME)

_CATEGORICAL_TYPES = (type(None), bool, int, float, str)
_RANGE_KEYS = {"type", "low", "high", "log", "step"}
_CATEGORICAL_KEYS = {"type", "choices"}


@dataclass(frozen=True)
class FloatParam:
    """A float `TrainConfig` field sampled from ``[low, high]``, on a log scale if `log`."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "float", "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            entry["step"] = self.step
        return entry


@dataclass(frozen=True)
class IntParam:
    """An integer `TrainConfig` field sampled from ``[low, high]``, on a log scale if `log`."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "int", "low": self.low, "high": self.high, "log": self.log}
        if self.step != 1:
            entry["step"] = self.step
        return entry


@dataclass(frozen=True)
class CategoricalParam:
    """A `TrainConfig` field sampled from a list of choices."""

    choices: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def contains(self, value: Any) -> bool:
        # 1 == 1.0 == True in Python, so compare types too: choices [0.0, 0.1] do not contain 0.
        return any(type(value) is type(choice) and value == choice for choice in self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}


Param = FloatParam | IntParam | CategoricalParam | SubsetParam


@dataclass(frozen=True)
class SearchSpace:
    """The sampled (`params`) and fixed (`fixed`) `TrainConfig` fields of a study.

    A field appears in at most one of the two mappings. Fields in neither keep the value that
    the study config's ``fixed`` section or the `TrainConfig` default gives them.
    """

    params: dict[str, Param]
    fixed: dict[str, Any]

    @classmethod
    def from_dict(cls, mapping: Any, *, source: str = "search space") -> SearchSpace:
        """Build a space from the parsed YAML mapping ``{"parameters": {...}}``.

        Raises
        ------
        ConfigError
            On any invalid entry; the message names `source`, the parameter and the value.
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping with the key 'parameters', got {type(mapping).__name__}"
            )
        unknown = sorted(set(mapping) - {"parameters"})
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}; the only key is 'parameters'")
        entries = mapping.get("parameters")
        if not isinstance(entries, Mapping) or not entries:
            raise ConfigError(f"{source}: 'parameters' must be a non-empty mapping of TrainConfig fields")

        field_names = {field.name for field in dataclasses.fields(TrainConfig)}
        params: dict[str, Param] = {}
        fixed: dict[str, Any] = {}
        for name, entry in entries.items():
            if name not in field_names:
                raise ConfigError(
                    f"{source}: unknown parameter {name!r}; parameters must be TrainConfig fields "
                    f"({', '.join(sorted(field_names))})"
                )
            if isinstance(entry, Mapping) and "fixed" in entry:
                if set(entry) != {"fixed"}:
                    extra = sorted(set(entry) - {"fixed"})
                    raise ConfigError(f"{source}: parameter {name!r}: 'fixed' takes no other keys, got {extra}")
                fixed[name] = _check_train_value(name, entry["fixed"], source)
            elif isinstance(entry, Mapping):
                params[name] = _parse_param(name, entry, source)
            else:
                fixed[name] = _check_train_value(name, entry, source)
        return cls(params=params, fixed=fixed)

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Read and validate a space file (YAML)."""
        path = Path(path)
        mapping = read_yaml_file(
            path,
            "search space file",
            missing_hint="pass an existing YAML file",
            folder_hint="pass a YAML file",
        )
        return cls.from_dict(mapping, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Return the space as a plain mapping that `from_dict` reads back unchanged."""
        entries: dict[str, Any] = {name: param.to_dict() for name, param in self.params.items()}
        entries.update({name: {"fixed": _plain(value)} for name, value in self.fixed.items()})
        return {"parameters": entries}

    def suggest(self, trial: optuna.Trial, *, objective: str) -> dict[str, Any]:
        """Sample the open parameters on `trial`; return the sampled values by field name.

        `objective` is the trial's alignment objective where the space does not sample it.
        The objective is sampled first, and a setting that only other objectives read is not
        sampled at all.
        """
        sampled: dict[str, Any] = {}
        if "objective" in self.params:
            sampled["objective"] = self.params["objective"].suggest(trial, "objective")
        reads = OBJECTIVE_SETTINGS.get(sampled.get("objective", objective), frozenset())
        ignored = frozenset().union(*OBJECTIVE_SETTINGS.values()) - reads
        for name, param in self.params.items():
            if name not in sampled and name not in ignored:
                sampled[name] = param.suggest(trial, name)
        return sampled

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Return the Optuna distribution of every open parameter."""
        return {name: param.distribution() for name, param in self.params.items()}

    def restrict(self, settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split `settings` into values the space can sample and values it cannot.

        Returns
        -------
        inside : dict
            Open parameters whose value in `settings` lies in the parameter's range or choices.
        outside : dict
            Open parameters whose value in `settings` lies outside, by name.
        """
        inside: dict[str, Any] = {}
        outside: dict[str, Any] = {}
        for name, param in self.params.items():
            if name not in settings:
                continue
            value = settings[name]
            if param.contains(value):
                inside[name] = value
            else:
                outside[name] = value
        return inside, outside


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file."""
    return SearchSpace.from_file(path)


def ensure_space_file(studies_dir: str | Path) -> Path:
    """Return ``studies_dir/space.yaml``, first writing the packaged default there if missing.

    The copy lets a user edit the space of later studies in place.
    """
    path = Path(studies_dir) / SPACE_FILE_NAME
    if not path.is_file():
        atomic_write_text(path, PACKAGED_SPACE_FILE.read_text(encoding="utf-8"))
    return path


def _parse_param(name: str, entry: Mapping[str, Any], source: str) -> Param:
    kind = entry.get("type")
    where = f"{source}: parameter {name!r}"
    if kind in ("float", "int"):
        unknown = sorted(set(entry) - _RANGE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {sorted(_RANGE_KEYS)}")
        for key in ("low", "high"):
            if key not in entry:
                raise ConfigError(f"{where}: missing key {key!r}")
        log = entry.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}: 'log' must be true or false, got {log!r}")
        if kind == "float":
            param: Param = _parse_float(entry, log, where)
        else:
            param = _parse_int(entry, log, where)
        for bound in (param.low, param.high):
            _check_train_value(name, bound, source)
        return param
    if kind == "categorical":
        unknown = sorted(set(entry) - _CATEGORICAL_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {sorted(_CATEGORICAL_KEYS)}")
        if name == SUBSET_FIELD:
            return SubsetParam.from_choices(entry.get("choices"), where)
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
        for choice in choices:
            if not isinstance(choice, _CATEGORICAL_TYPES):
                raise ConfigError(
                    f"{where}: choice {choice!r} has type {type(choice).__name__}; "
                    "choices must be null, booleans, numbers or strings"
                )
            _check_train_value(name, choice, source)
        if len({(type(choice), choice) for choice in choices}) != len(choices):
            raise ConfigError(f"{where}: 'choices' lists a value twice: {choices!r}")
        return CategoricalParam(tuple(choices))
    raise ConfigError(f"{where}: 'type' must be float, int or categorical, got {kind!r}; use {{fixed: VALUE}} to fix it")


def _parse_float(entry: Mapping[str, Any], log: bool, where: str) -> FloatParam:
    low = _to_float(entry["low"], "low", where)
    high = _to_float(entry["high"], "high", where)
    step = None if entry.get("step") is None else _to_float(entry["step"], "step", where)
    _check_range(low, high, log, where)
    if step is not None:
        if step <= 0:
            raise ConfigError(f"{where}: 'step' must be > 0, got {step}")
        if log:
            raise ConfigError(f"{where}: 'step' cannot be combined with log: true")
    return FloatParam(low=low, high=high, log=log, step=step)


def _parse_int(entry: Mapping[str, Any], log: bool, where: str) -> IntParam:
    values = {}
    for key in ("low", "high", "step"):
        value = entry.get(key, 1 if key == "step" else None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key!r} must be an integer, got {value!r}")
        values[key] = value
    _check_range(values["low"], values["high"], log, where)
    if values["step"] < 1:
        raise ConfigError(f"{where}: 'step' must be >= 1, got {values['step']}")
    if log and values["step"] != 1:
        raise ConfigError(f"{where}: 'step' cannot be combined with log: true")
    return IntParam(low=values["low"], high=values["high"], log=log, step=values["step"])


def _to_float(value: Any, key: str, where: str) -> float:
    # PyYAML reads "1e-5" (no dot) as a string, so numeric strings are accepted as well.
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}") from None
    else:
        raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {key!r} must be finite, got {value!r}")
    return number


def _check_range(low: float, high: float, log: bool, where: str) -> None:
    if low > high:
        raise ConfigError(f"{where}: 'low' must be <= 'high', got low={low}, high={high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range must lie above 0, got low={low}")


def _check_train_value(name: str, value: Any, source: str) -> Any:
    """Return `value` if `TrainConfig.from_dict` accepts it for field `name`, else raise."""
    try:
        # A fixed modality subset may be written as a "visual+text" string; it is kept as a tuple.
        value = decode_settings({name: value})[name]
        TrainConfig.from_dict({name: value})
    except ConfigError as error:
        raise ConfigError(f"{source}: parameter {name!r} value {value!r} is invalid: {error}") from None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value
