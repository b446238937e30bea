"""The exception family of adaptsearch.

Every error that a user can cause (a bad file, a bad config, an incompatible study) is an
``AdaptSearchError``. The command-line interface catches this family once, prints the
message as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class AdaptSearchError(Exception):
    """Base class of every error that adaptsearch reports to its user."""

    exit_code = 1


class DataError(AdaptSearchError):
    """An input file (`.csd`, pickle, segment table, split file, prepared cache) is invalid."""

    exit_code = 2


class ConfigError(AdaptSearchError):
    """A configuration, search-space or parameter file is invalid."""

    exit_code = 2


class ModelError(AdaptSearchError):
    """A model file cannot be loaded or does not fit the data."""

    exit_code = 3


class StudyError(AdaptSearchError):
    """A study cannot be created, resumed or read (storage URL, name, incompatible config)."""

    exit_code = 4


@contextlib.contextmanager
def config_errors_prefixed(prefix: str) -> Iterator[None]:
    """Re-raise a `ConfigError` from the block with `prefix` (a file or a section) before its message."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{prefix}: {error}") from None
