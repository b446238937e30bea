"""Run set-up shared by search trials and the final retraining: prepared data plus the frozen source model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from adapters import MODALITIES
from adapters.errors import DataError
from adapters.params import SourceModelConfig
from adapters.prepare import PreparedData, prepare_dataset
from adapters.source import SourceModel, load_or_train_source

__all__ = ["RunContext", "prepare_context"]

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Everything a training run reads but never changes.

    Attributes
    ----------
    source_data, target_data : PreparedData
        Prepared source (MOSEI) and target (MOSI) datasets.
    source_model : SourceModel
        Frozen, takes `modalities` in this order.
    source_info : dict
        From `load_or_train_source`: ``trained``, cache ``path`` and source valid/test metrics.
    modalities : tuple of str
    """

    source_data: PreparedData
    target_data: PreparedData
    source_model: SourceModel
    source_info: dict
    modalities: tuple[str, ...] = field(default=MODALITIES)


def prepare_context(
    source_cfg, target_cfg, source_model_cfg: SourceModelConfig, cache_dir: Path,
    modalities: tuple[str, ...] | None = None,
) -> RunContext:
    """Prepare both datasets and load or train the source model.

    Parameters
    ----------
    source_cfg, target_cfg : DatasetConfig
    source_model_cfg : SourceModelConfig
    cache_dir : Path
        Cache root (``studies/cache``): prepared data, ``source/`` models, ``prototypes/``.
    modalities : tuple of str, optional
        Modalities to use; default: every modality both datasets have, in ``MODALITIES`` order.

    Raises
    ------
    DataError
        If a requested modality is missing from either dataset, or the datasets share none.
    ModelError
        If a TorchScript source model does not fit the source widths.
    """
    cache_dir = Path(cache_dir)
    source_data = prepare_dataset(source_cfg, cache_dir)
    target_data = prepare_dataset(target_cfg, cache_dir)

    if modalities is None:
        modalities = tuple(m for m in MODALITIES if m in source_data.widths and m in target_data.widths)
        if not modalities:
            raise DataError(
                f"source {source_data.name!r} ({', '.join(source_data.modalities)}) and target {target_data.name!r} "
                f"({', '.join(target_data.modalities)}) share no modality; give both datasets a common modality"
            )
    for modality in modalities:
        for role, data in (("source", source_data), ("target", target_data)):
            if modality not in data.widths:
                raise DataError(
                    f"{role} dataset {data.name!r} has no {modality} features (has {', '.join(data.modalities)}); "
                    f"add a {modality} file to its configuration or drop {modality} from the modalities"
                )

    # Trials are scored on the target's valid split, and an empty one would fail in the first
    # trial's metrics instead of here, before the source model is trained.
    if len(target_data.splits["valid"]) == 0:
        raise DataError(
            f"target dataset {target_data.name!r} has no valid segment left after splitting and dropping, "
            "and trials are scored on it; check its split and the segments dropped ('adaptsearch data inspect')"
        )
    source_model, source_info = load_or_train_source(source_model_cfg, source_data, cache_dir, tuple(modalities))
    return RunContext(source_data, target_data, source_model, source_info, tuple(modalities))
