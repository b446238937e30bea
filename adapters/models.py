"""Adapter networks: one MLP per modality from the target (MOSI) width to the source (MOSEI) width."""

from __future__ import annotations

import torch
from torch import nn

from adapters.errors import ConfigError

__all__ = ["Adapter", "build_adapters"]


class _BatchNormTolerant(nn.BatchNorm1d):
    """BatchNorm1d that normalises a training batch of one row with its running statistics.

    Batch statistics of a single row are undefined (the variance is zero), and PyTorch raises
    on them. Such a batch occurs as the last, short batch of an epoch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def _norm_layer(norm: str, width: int) -> nn.Module:
    if norm == "layer":
        return nn.LayerNorm(width)
    if norm == "batch":
        return _BatchNormTolerant(width)
    return nn.Identity()


class Adapter(nn.Module):
    """MLP that maps one modality's target features into the source feature space.

    ``depth`` linear layers; every layer but the last is followed by the norm, ReLU and
    dropout. The last layer is linear, so the output can take any value of the normalised
    source space.

    Parameters
    ----------
    in_dim, out_dim : target and source feature widths.
    hidden : width of the hidden layers (unused when ``depth`` is 1).
    depth : number of linear layers, at least 1.
    dropout : dropout probability after each hidden layer.
    norm : ``"layer"``, ``"batch"`` or ``"none"``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 2, dropout: float = 0.1, norm: str = "layer"
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Adapter {name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"Adapter dropout must be in [0, 1), got {dropout!r}")
        if norm not in ("layer", "batch", "none"):
            raise ConfigError(f"Adapter norm must be one of layer, batch, none; got {norm!r}")
        self.config = {
            "in_dim": in_dim, "out_dim": out_dim, "hidden": hidden, "depth": depth, "dropout": dropout, "norm": norm
        }

        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), _norm_layer(norm, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features of shape (n, in_dim) to shape (n, out_dim)."""
        return self.net(x)


def build_adapters(
    in_widths: dict[str, int], out_widths: dict[str, int], modalities: tuple[str, ...], *,
    hidden: int, depth: int, dropout: float, norm: str,
) -> nn.ModuleDict:
    """Build one `Adapter` per modality, in `modalities` order."""
    return nn.ModuleDict(
        {
            modality: Adapter(in_widths[modality], out_widths[modality], hidden, depth, dropout, norm)
            for modality in modalities
        }
    )
