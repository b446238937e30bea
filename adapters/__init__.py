"""adapters: the training library of adaptsearch.

Loads CMU Multimodal SDK features into normalised per-segment matrices, trains the frozen
source (MOSEI) model, and trains per-modality adapters that map target (MOSI) features into
the source feature space. It knows nothing of Optuna: the search layer (`search`) calls
`adapters.trainer.train_adapters` once per trial with an epoch callback.

The import name `adapters` is also used by an unrelated PyPI package (the successor of
adapter-transformers). Installing both into one environment makes one overwrite the other,
so this module refuses to import when that distribution is present.
"""

from importlib import metadata as _metadata

__adaptsearch__ = True


def _reject_foreign_adapters_distribution() -> None:
    try:
        foreign = _metadata.distribution("adapters")
    except _metadata.PackageNotFoundError:
        return
    raise ImportError(
        f"the PyPI package 'adapters' {foreign.version} is installed in this environment and "
        "shares the import name 'adapters' with adaptsearch's training library; "
        "run 'pip uninstall adapters' or install adaptsearch in its own virtual environment"
    )


_reject_foreign_adapters_distribution()

from adapters.errors import (  # noqa: E402  (the guard above must run first)
    AdaptSearchError,
    ConfigError,
    DataError,
    ModelError,
    StudyError,
)

MODALITIES = ("visual", "audio", "text")

__all__ = [
    "MODALITIES",
    "AdaptSearchError",
    "ConfigError",
    "DataError",
    "ModelError",
    "StudyError",
]
