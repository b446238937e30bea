"""Adapter weights of finished trials in an Optuna artifact store, listed on optuna-dashboard.

The store is an `optuna.artifacts.FileSystemArtifactStore` beside the study database: for
``sqlite:///studies/x.db`` it is the folder ``studies/x-artifacts/``. Other storages need a
folder passed explicitly.

Where the metadata lives, and why
---------------------------------
`optuna.artifacts.upload_artifact` records an artifact in the trial's system attributes,
which Optuna rejects once the trial is finished and which cannot be cleared later. The
adapters are uploaded when a trial is complete, and the store keeps only the top K trials,
so a trial that drops out of the top K must lose its entry. The metadata therefore goes to
the study's system attributes, which stay writable:

- ``dashboard:artifacts:<trial_id>:<artifact_id>`` contains the artifact metadata under the key
  optuna-dashboard 0.21 reads for a trial's artifact list and for the download route
  ``/artifacts/<study_id>/<trial_id>/<artifact_id>`` (its own uploads used this key). An
  evicted artifact's value becomes JSON ``null``, which the dashboard skips; its own
  delete button does the same.
- ``adaptsearch:adapters:<trial_number>`` contains ``{artifact_id, filename, trial_id, value}``
  for `download_adapters` and the top-K ranking, and ``null`` once evicted.

The files themselves are written and removed through the `ArtifactStore` protocol
(``write``, ``open_reader``, ``remove``) and read back with `optuna.artifacts.download_artifact`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from adapters.errors import ConfigError, StudyError
from search.notes import resolve_trial
from search.objective import jsonable
from search.storage import MEMORY_URL, check_url, redact_url, sqlite_path

__all__ = [
    "ADAPTERS_FORMAT",
    "StoredAdapters",
    "artifact_dir_for",
    "artifact_store_for",
    "download_adapters",
    "load_adapters",
    "prune_adapters",
    "stored_adapters",
    "upload_adapters",
]

logger = logging.getLogger(__name__)

ADAPTERS_FORMAT = "adaptsearch-adapters"
ADAPTERS_FORMAT_VERSION = 1
INDEX_PREFIX = "adaptsearch:adapters:"
# Key prefix optuna-dashboard 0.21 reads trial artifacts from in the study system attributes.
DASHBOARD_PREFIX = "dashboard:artifacts:"
MIMETYPE = "application/octet-stream"


@dataclass(frozen=True)
class StoredAdapters:
    """Index entry of one trial's stored adapters."""

    trial_number: int
    trial_id: int
    artifact_id: str
    filename: str
    value: float | None


def artifact_dir_for(storage_url: str, override: str | Path | None = None) -> Path | None:
    """Return the artifact folder of `storage_url`: `override`, else ``<db stem>-artifacts`` beside a SQLite file.

    Returns None for storages without a file (``memory``, PostgreSQL, MySQL) when no
    override is given.
    """
    if override is not None:
        return Path(override)
    if storage_url == MEMORY_URL:
        return None
    path = sqlite_path(storage_url)
    if path is None:
        return None
    return path.with_name(f"{path.stem}-artifacts")


def artifact_store_for(
    storage_url: str, override: str | Path | None = None, *, create: bool = True
) -> FileSystemArtifactStore:
    """Return the `FileSystemArtifactStore` of `storage_url`, creating its folder unless `create` is False.

    Raises
    ------
    ConfigError
        If the storage is not a SQLite file and no `override` folder is given, or the folder
        is missing and `create` is False.
    """
    check_url(storage_url)
    folder = artifact_dir_for(storage_url, override)
    if folder is None:
        raise ConfigError(
            f"storage {redact_url(storage_url)} is not a SQLite file, so adapter artifacts have no "
            "default folder; pass an artifact folder (--artifacts DIR)"
        )
    if not folder.is_dir():
        if not create:
            raise ConfigError(f"artifact folder {folder} not found; run a study with artifacts first or pass --artifacts DIR")
        folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


def _index_key(number: int) -> str:
    return f"{INDEX_PREFIX}{number}"


def _dashboard_key(trial_id: int, artifact_id: str) -> str:
    return f"{DASHBOARD_PREFIX}{trial_id}:{artifact_id}"


def stored_adapters(study: optuna.Study) -> dict[int, StoredAdapters]:
    """Return the index of stored adapters by trial number (evicted trials left out)."""
    entries = {}
    for key, value in study._storage.get_study_system_attrs(study._study_id).items():
        if not key.startswith(INDEX_PREFIX) or value is None:
            continue
        number = int(key[len(INDEX_PREFIX) :])
        entries[number] = StoredAdapters(trial_number=number, **value)
    return entries


def _state_dicts(state_dict: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """Return modality -> state dict on the CPU, from modules or state dicts."""
    result = {}
    for modality, item in state_dict.items():
        if isinstance(item, torch.nn.Module):
            item = item.state_dict()
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"adapters[{modality!r}] must be an nn.Module or a state dict, got {type(item).__name__}"
            )
        result[str(modality)] = {name: tensor.detach().cpu().clone() for name, tensor in item.items()}
    return result


def upload_adapters(
    study: optuna.Study,
    trial: int | FrozenTrial | optuna.Trial,
    state_dict: Mapping[str, Any],
    config: Any,
    store,
    *,
    keep_top: int | None = None,
    value: float | None = None,
) -> str | None:
    """Store a trial's adapters as ``trial-<number>-adapters.pt`` and list them on the dashboard.

    Parameters
    ----------
    study : optuna.Study
    trial : int, FrozenTrial or optuna.Trial
        The trial; a live trial (inside the objective, before ``tell``) works as well as a
        finished one.
    state_dict : mapping of modality -> nn.Module or state dict
        The trained adapters, e.g. ``TrainResult.adapters``.
    config : TrainConfig or mapping
        The trial's training settings, saved beside the weights.
    store : optuna ArtifactStore
    keep_top : int or None
        Keep only the adapters of the `keep_top` best COMPLETE trials (by the first objective);
        None keeps all.
    value : float or None
        The trial's objective value; needed for a live trial when `keep_top` is set, because
        the value is stored only at ``tell``.

    Returns
    -------
    str or None
        The artifact id, or None when the trial does not rank among the top `keep_top`.
    """
    if keep_top is not None and (isinstance(keep_top, bool) or not isinstance(keep_top, int) or keep_top < 1):
        raise ConfigError(f"keep_top must be an integer >= 1 or None, got {keep_top!r}")
    frozen = study._storage.get_trial(resolve_trial(study, trial)._trial_id)
    if value is None and frozen.state == TrialState.COMPLETE:
        value = frozen.values[0]
    if frozen.state in (TrialState.PRUNED, TrialState.FAIL):
        raise StudyError(f"trial {frozen.number} is {frozen.state.name}; only complete trials get stored adapters")
    if keep_top is not None and value is None:
        raise ConfigError(f"trial {frozen.number} has no value yet; pass value= when keep_top is set")

    if keep_top is not None and not _ranks_in_top(study, frozen.number, value, keep_top):
        logger.debug("trial %d (%s) is outside the top %d; its adapters are not stored", frozen.number, value, keep_top)
        return None

    payload = {
        "format": ADAPTERS_FORMAT,
        "format_version": ADAPTERS_FORMAT_VERSION,
        "study": study.study_name,
        "trial": frozen.number,
        "value": value,
        "config": jsonable(config.to_dict() if hasattr(config, "to_dict") else dict(config)),
        "state_dict": _state_dicts(state_dict),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)

    artifact_id = str(uuid.uuid4())
    filename = f"trial-{frozen.number}-adapters.pt"
    store.write(artifact_id, buffer)
    # Metadata is written after the file, so no entry ever points at a missing file.
    meta = {"artifact_id": artifact_id, "filename": filename, "mimetype": MIMETYPE, "encoding": None}
    study._storage.set_study_system_attr(study._study_id, _dashboard_key(frozen._trial_id, artifact_id), json.dumps(meta))
    previous = stored_adapters(study).get(frozen.number)
    study._storage.set_study_system_attr(
        study._study_id,
        _index_key(frozen.number),
        {"trial_id": frozen._trial_id, "artifact_id": artifact_id, "filename": filename, "value": value},
    )
    if previous is not None:
        _remove_files(study, store, previous)
    logger.info("stored the adapters of trial %d as artifact %s", frozen.number, artifact_id)

    if keep_top is not None:
        prune_adapters(study, store, keep_top)
    return artifact_id


def _sort_key(study: optuna.Study, value: float | None, number: int) -> tuple[float, int]:
    if value is None or not math.isfinite(value):
        return (math.inf, number)
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    return (sign * value, number)


def _ranking(study: optuna.Study, extra: tuple[int, float] | None = None) -> list[tuple[int, float | None]]:
    """Return (trial number, value) of trials whose adapters may be kept, best first."""
    trials = study.get_trials(deepcopy=False)
    candidates: dict[int, float | None] = {}
    for number, entry in stored_adapters(study).items():
        if number >= len(trials):
            continue
        state = trials[number].state
        if state == TrialState.COMPLETE:
            candidates[number] = trials[number].values[0]
        elif state in (TrialState.RUNNING, TrialState.WAITING):
            # Uploaded from inside the objective, before tell.
            candidates[number] = entry.value
    if extra is not None:
        candidates[extra[0]] = extra[1]
    return sorted(candidates.items(), key=lambda item: _sort_key(study, item[1], item[0]))


def _ranks_in_top(study: optuna.Study, number: int, value: float, keep_top: int) -> bool:
    ranked = _ranking(study, (number, value))
    return number in {item[0] for item in ranked[:keep_top]}


def prune_adapters(study: optuna.Study, store, keep_top: int) -> list[int]:
    """Remove stored adapters outside the top `keep_top` trials and those of trials that did not complete.

    Returns
    -------
    list of int
        The trial numbers whose adapters were removed.
    """
    if isinstance(keep_top, bool) or not isinstance(keep_top, int) or keep_top < 1:
        raise ConfigError(f"keep_top must be an integer >= 1, got {keep_top!r}")
    keep = {number for number, _ in _ranking(study)[:keep_top]}
    removed = []
    for number, entry in stored_adapters(study).items():
        if number in keep:
            continue
        study._storage.set_study_system_attr(study._study_id, _index_key(number), None)
        _remove_files(study, store, entry)
        removed.append(number)
    if removed:
        logger.info("removed the adapters of trials %s, outside the top %d", sorted(removed), keep_top)
    return sorted(removed)


def _remove_files(study: optuna.Study, store, entry: StoredAdapters) -> None:
    study._storage.set_study_system_attr(
        study._study_id, _dashboard_key(entry.trial_id, entry.artifact_id), json.dumps(None)
    )
    remove = getattr(store, "remove", None)
    if remove is None:
        # NOTE: a store without remove() keeps the file; only its listing is cleared.
        logger.warning("artifact store %s cannot remove files; artifact %s stays on disk", type(store).__name__, entry.artifact_id)
        return
    try:
        remove(entry.artifact_id)
    except ArtifactNotFound:
        # Another worker evicted the same trial first.
        logger.debug("artifact %s of trial %d was already removed", entry.artifact_id, entry.trial_number)


def download_adapters(study: optuna.Study, trial_number: int, store, dest: str | Path) -> Path:
    """Copy trial `trial_number`'s stored adapters to `dest` (a file path, or a folder to put the file in).

    Raises
    ------
    StudyError
        If the trial has no stored adapters (never complete, or evicted from the top K) or the
        file is missing from the store.
    ConfigError
        If the destination file exists.
    """
    entry = stored_adapters(study).get(trial_number)
    if entry is None:
        kept = ", ".join(str(number) for number in sorted(stored_adapters(study))) or "none"
        raise StudyError(
            f"trial {trial_number} of study {study.study_name!r} has no stored adapters "
            f"(trials with adapters: {kept}); pick one of those or retrain with 'adaptsearch train'"
        )
    dest = Path(dest)
    path = dest / entry.filename if dest.is_dir() else dest
    if path.exists():
        raise ConfigError(f"{path} already exists; remove it or pass another destination")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=entry.artifact_id)
    except ArtifactNotFound:
        raise StudyError(
            f"the adapters of trial {trial_number} (artifact {entry.artifact_id}) are missing from the artifact "
            "store; check the artifact folder"
        ) from None
    return path


def load_adapters(path: str | Path) -> dict[str, Any]:
    """Read a file written by `upload_adapters`: format, study, trial, value, config, state_dict.

    Raises
    ------
    StudyError
        If the file is not an adaptsearch adapters file.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != ADAPTERS_FORMAT:
        raise StudyError(f"{path} is not an adaptsearch adapters file; download it with download_adapters")
    return payload
