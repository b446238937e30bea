"""The frozen source (MOSEI) sentiment model: trained once and cached, or loaded from TorchScript.

A trained model has one encoder per modality (Linear, LayerNorm, ReLU, dropout) and a fusion
head over the concatenated encodings. It is trained with L1 loss on the source training split,
early-stopped on the validation MAE and reported on the test split. The result is cached under
``cache_dir/source`` keyed by the prepared data's fingerprint, the model config and the
modalities, so every trial of a study reuses one model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adapters.errors import ModelError
from adapters.io import atomic_path
from adapters.metrics import compute_metrics
from adapters.params import SourceModelConfig

__all__ = ["SourceModel", "SourceModelConfig", "load_or_train_source", "source_cache_path"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1


class _FusionNet(nn.Module):
    def __init__(self, widths: dict[str, int], modalities: tuple[str, ...], config: SourceModelConfig) -> None:
        super().__init__()
        self.modalities = modalities
        self.encoders = nn.ModuleDict(
            {
                modality: nn.Sequential(
                    nn.Linear(widths[modality], config.hidden),
                    nn.LayerNorm(config.hidden),
                    nn.ReLU(),
                    nn.Dropout(config.dropout),
                )
                for modality in modalities
            }
        )
        self.head = nn.Sequential(
            nn.Linear(config.hidden * len(modalities), config.fusion_hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.fusion_hidden, 1),
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        encoded = [self.encoders[modality](features[modality]) for modality in self.modalities]
        return self.head(torch.cat(encoded, dim=1)).squeeze(1)


class SourceModel(nn.Module):
    """Frozen sentiment regressor on source-space features.

    ``forward({modality: tensor of shape (n, d_m)}) -> tensor of shape (n,)``. The wrapped
    network stays in eval mode with ``requires_grad`` False on every parameter; gradients
    still flow to the inputs, which is how the adapters learn through the task loss.
    """

    def __init__(self, network: nn.Module, modalities: tuple[str, ...], widths: dict[str, int], *, scripted: bool) -> None:
        super().__init__()
        self.network = network
        self.modalities = tuple(modalities)
        self.widths = dict(widths)
        self.scripted = scripted
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        super().train(False)

    def train(self, mode: bool = True) -> SourceModel:
        """Keep eval mode: the source model is frozen, so dropout stays off whatever `mode` is."""
        return super().train(False)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.scripted:
            output = self.network(*[features[modality] for modality in self.modalities])
        else:
            output = self.network({modality: features[modality] for modality in self.modalities})
        return output.reshape(-1)


def _tensors(split, modalities) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    features = {modality: torch.from_numpy(np.ascontiguousarray(split.features[modality], dtype=np.float32)) for modality in modalities}
    return features, torch.from_numpy(np.ascontiguousarray(split.labels, dtype=np.float32))


@torch.no_grad()
def _predict(model: nn.Module, features: dict[str, torch.Tensor]) -> np.ndarray:
    model.eval()
    return model(features).reshape(-1).double().numpy()


def _train_network(config: SourceModelConfig, data, modalities: tuple[str, ...]) -> tuple[_FusionNet, dict]:
    train_x, train_y = _tensors(data.splits["train"], modalities)
    valid_x, valid_y = _tensors(data.splits["valid"], modalities)
    n_rows = train_y.shape[0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        network = _FusionNet(data.widths, modalities, config)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best_mae, best_state, best_epoch, stale = float("inf"), None, 0, 0

        for epoch in range(1, config.epochs + 1):
            network.train()
            order = torch.randperm(n_rows, generator=generator)
            for start in range(0, n_rows, config.batch_size):
                rows = order[start : start + config.batch_size]
                optimizer.zero_grad()

                prediction = network({modality: values[rows] for modality, values in train_x.items()})
                loss = nn.functional.l1_loss(prediction, train_y[rows])

                loss.backward()
                optimizer.step()

            valid_mae = float(np.mean(np.abs(_predict(network, valid_x) - valid_y.double().numpy())))
            if valid_mae < best_mae:
                best_mae, best_state, best_epoch, stale = valid_mae, copy.deepcopy(network.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= config.patience:
                    break

    network.load_state_dict(best_state)
    network.eval()
    return network, {"best_epoch": best_epoch, "epochs_run": epoch, "valid_mae": best_mae}


def source_cache_path(cache_dir: Path, config: SourceModelConfig, fingerprint: str, modalities: tuple[str, ...]) -> Path:
    """Return the cache file of a trained source model for this data, config and modalities."""
    key = json.dumps(
        {"format": _CACHE_FORMAT, "fingerprint": fingerprint, "config": config.to_dict(), "modalities": list(modalities)},
        sort_keys=True,
    )
    return Path(cache_dir) / "source" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def _evaluate_splits(model: SourceModel, data, modalities) -> dict:
    results = {}
    for name in ("valid", "test"):
        features, labels = _tensors(data.splits[name], modalities)
        results[name] = compute_metrics(_predict(model, features), labels.numpy()).to_dict()
    return results


def _corr_text(metrics: dict) -> str:
    """Format Pearson r of a `Metrics.to_dict` result to 3 decimals, or as undefined with the reason."""
    if metrics["corr"] is None:
        return f"undefined ({metrics['corr_reason']})"
    return f"{metrics['corr']:.3f}"


_SHAPE_MISMATCH = re.compile(r"\((\d+)x(\d+) and (\d+)x(\d+)\)")


def _load_torchscript(path: Path, data, modalities: tuple[str, ...]) -> SourceModel:
    """Load a TorchScript model and check it against the data's widths with a two-row probe.

    A module attribute ``input_widths`` (a list in modality order or a dict by modality), when
    present, is compared first. Otherwise a failed matrix product in the probe is read for the
    expected and received widths.
    """
    if not path.is_file():
        raise ModelError(f"TorchScript file {path} not found; fix source_model.torchscript")
    try:
        network = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise ModelError(f"cannot load TorchScript file {path}: {str(error).splitlines()[0]}") from None

    declared = getattr(network, "input_widths", None)
    if declared is not None:
        expected = dict(declared) if isinstance(declared, dict) else dict(zip(modalities, declared))
        for modality in modalities:
            if modality in expected and int(expected[modality]) != data.widths[modality]:
                raise ModelError(
                    f"TorchScript model {path.name} expects {modality} width {int(expected[modality])}, "
                    f"got {data.widths[modality]} in dataset {data.name!r}; use features of that extractor or another model"
                )

    model = SourceModel(network, modalities, data.widths, scripted=True)
    probe = {modality: torch.zeros(2, data.widths[modality]) for modality in modalities}
    try:
        with torch.no_grad():
            output = model(probe)
    except RuntimeError as error:
        message = str(error)
        match = _SHAPE_MISMATCH.search(message)
        if match:
            got, expected_width = int(match.group(2)), int(match.group(3))
            named = [modality for modality in modalities if data.widths[modality] == got]
            modality = named[0] if len(named) == 1 else "/".join(named) or "an input"
            raise ModelError(
                f"TorchScript model {path.name} expects {modality} width {expected_width}, got {got} "
                f"in dataset {data.name!r}; use features of that extractor or another model"
            ) from None
        raise ModelError(
            f"TorchScript model {path.name} failed on inputs of widths "
            f"{ {modality: data.widths[modality] for modality in modalities} }: {message.splitlines()[0]}"
        ) from None
    if output.shape != (2,):
        raise ModelError(f"TorchScript model {path.name} must return shape (n,) or (n, 1); got {tuple(output.shape)} for n=2")
    return model


def load_or_train_source(
    config: SourceModelConfig, source_data, cache_dir: Path, modalities: tuple[str, ...]
) -> tuple[SourceModel, dict]:
    """Return the frozen source model, training it only when no cached one fits.

    Parameters
    ----------
    config : SourceModelConfig
    source_data : PreparedData
        Prepared source dataset (normalised features).
    cache_dir : Path
        Cache root; trained models go to ``cache_dir/source``.
    modalities : tuple of str
        Input modalities, in the order the model takes them.

    Returns
    -------
    model : SourceModel
    info : dict
        ``trained`` (bool, False when loaded from cache or TorchScript), ``path``, ``best_epoch``,
        and ``valid``/``test`` metric dicts on the source splits.

    Raises
    ------
    ModelError
        If a TorchScript model cannot be loaded or does not fit the data widths.
    """
    modalities = tuple(modalities)
    missing = [modality for modality in modalities if modality not in source_data.widths]
    if missing:
        raise ModelError(f"source dataset {source_data.name!r} has no {missing[0]} features; remove it from the modalities")

    if config.torchscript is not None:
        model = _load_torchscript(Path(config.torchscript), source_data, modalities)
        info = {"trained": False, "path": str(config.torchscript), "best_epoch": None}
        info.update(_evaluate_splits(model, source_data, modalities))
        return model, info

    path = source_cache_path(cache_dir, config, source_data.fingerprint, modalities)
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            network = _FusionNet(source_data.widths, modalities, config)
            network.load_state_dict(stored["state_dict"])
        except (OSError, RuntimeError, KeyError, EOFError) as error:
            logger.warning("ignoring unreadable source model cache %s (%s); retraining", path, error)
        else:
            info = dict(stored["info"], trained=False, path=str(path))
            return SourceModel(network, modalities, source_data.widths, scripted=False), info

    logger.info("training the source model on %s (%d rows)", source_data.name, len(source_data.splits["train"].labels))
    network, info = _train_network(config, source_data, modalities)
    model = SourceModel(network, modalities, source_data.widths, scripted=False)
    info.update(_evaluate_splits(model, source_data, modalities))
    logger.info(
        "source model: best epoch %d, %s test r=%s MAE=%.3f",
        info["best_epoch"], source_data.name, _corr_text(info["test"]), info["test"]["mae"],
    )
    with atomic_path(path, suffix=".pt") as temporary:
        torch.save({"state_dict": network.state_dict(), "info": info}, temporary)
    return model, dict(info, trained=True, path=str(path))
