"""Modality subsets as a search-space entry.

Optuna's categorical choices must be None, bool, int, float or str, so a subset of modalities
is sampled as one string, its names joined by ``+`` in ``MODALITIES`` order
(``"visual+text"``). A space file may list a choice as that string or as a YAML list
(``[text, visual]``); both are stored in the string form. The study config turns a sampled
string back into the ``modalities`` tuple of `TrainConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import optuna

from adapters import MODALITIES
from adapters.errors import ConfigError

FIELD = "modalities"
SEPARATOR = "+"


def encode_subset(value: Any, where: str = FIELD) -> str:
    """Return the canonical string of a modality subset given as a list, a tuple or a string.

    Raises
    ------
    ConfigError
        If the subset is empty, names an unknown modality or names one twice.
    """
    if isinstance(value, str):
        names = [name.strip() for name in value.split(SEPARATOR)]
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise ConfigError(
            f"{where}: a modality subset must be a list such as [visual, text] or a string such as "
            f"'visual+text', got {value!r}"
        )
    if not names or names == [""]:
        raise ConfigError(f"{where}: a modality subset must name at least one of {', '.join(MODALITIES)}")
    unknown = [name for name in names if name not in MODALITIES]
    if unknown:
        raise ConfigError(
            f"{where}: unknown modality {unknown[0]!r} in subset {value!r}; known modalities are {', '.join(MODALITIES)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: subset {value!r} names a modality twice")
    return SEPARATOR.join(name for name in MODALITIES if name in names)


def decode_subset(value: str) -> tuple[str, ...]:
    """Return the modalities tuple of a canonical subset string, in ``MODALITIES`` order."""
    return tuple(encode_subset(value).split(SEPARATOR))


def all_subsets() -> list[str]:
    """Return the canonical strings of every non-empty modality subset, larger subsets first."""
    return [
        SEPARATOR.join(names)
        for size in range(len(MODALITIES), 0, -1)
        for names in combinations(MODALITIES, size)
    ]


def decode_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return `settings` with a subset string under ``modalities`` turned into a tuple."""
    decoded = dict(settings)
    if isinstance(decoded.get(FIELD), str):
        decoded[FIELD] = decode_subset(decoded[FIELD])
    return decoded


def encode_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return `settings` with a list or tuple under ``modalities`` turned into its subset string."""
    encoded = dict(settings)
    if isinstance(encoded.get(FIELD), (list, tuple)):
        encoded[FIELD] = encode_subset(encoded[FIELD])
    return encoded


@dataclass(frozen=True)
class SubsetParam:
    """The ``modalities`` field sampled from a list of subsets, each stored as its canonical string."""

    choices: tuple[str, ...]

    @classmethod
    def from_choices(cls, choices: Any, where: str) -> SubsetParam:
        """Build the parameter from a space file's choice list of lists or strings.

        Raises
        ------
        ConfigError
            If the list is empty, a subset is invalid, or two choices name the same subset.
        """
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list of modality subsets, got {choices!r}")
        encoded = [encode_subset(choice, where) for choice in choices]
        repeated = sorted({subset for subset in encoded if encoded.count(subset) > 1})
        if repeated:
            raise ConfigError(f"{where}: 'choices' lists the subset {repeated[0]!r} twice (order does not count)")
        return cls(tuple(encoded))

    def suggest(self, trial: optuna.Trial, name: str) -> str:
        return trial.suggest_categorical(name, list(self.choices))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def contains(self, value: Any) -> bool:
        try:
            return encode_subset(value) in self.choices
        except ConfigError:
            return False

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}
