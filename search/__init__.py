"""search: the hyperparameter-search layer of adaptsearch (Optuna studies over `adapters`)."""

import adapters as _adapters

if not getattr(_adapters, "__adaptsearch__", False):
    raise ImportError(
        f"the module 'adapters' at {getattr(_adapters, '__file__', '?')} is not adaptsearch's "
        "training library (the unrelated PyPI package 'adapters' has probably overwritten it); "
        "run 'pip uninstall adapters' and reinstall adaptsearch in its own virtual environment"
    )

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("adaptsearch")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
