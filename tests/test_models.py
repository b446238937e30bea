import pytest
import torch

from adapters.errors import ConfigError
from adapters.models import Adapter


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("depth", [1, 3])
def test_adapter_shapes(norm, depth):
    adapter = Adapter(5, 7, hidden=8, depth=depth, dropout=0.2, norm=norm)

    assert adapter(torch.randn(4, 5)).shape == (4, 7)
    linear_layers = [module for module in adapter.modules() if isinstance(module, torch.nn.Linear)]
    assert len(linear_layers) == depth


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_adapter_batch_of_one_trains(norm):
    adapter = Adapter(5, 7, hidden=8, depth=2, norm=norm)
    adapter.train()

    output = adapter(torch.randn(1, 5))
    output.sum().backward()

    assert output.shape == (1, 7)
    assert torch.isfinite(output).all()


def test_adapter_batchnorm_single_row_keeps_running_stats():
    adapter = Adapter(3, 2, hidden=4, depth=2, norm="batch")
    norm = adapter.net[1]
    before = norm.running_mean.clone()

    adapter.train()
    adapter(torch.randn(1, 3))

    # A single row is normalised with the running statistics and does not update them.
    assert torch.equal(norm.running_mean, before)


@pytest.mark.parametrize(
    "kwargs, word", [({"in_dim": 0}, "in_dim"), ({"depth": 0}, "depth"), ({"norm": "group"}, "norm"), ({"dropout": 1.0}, "dropout")]
)
def test_adapter_rejects_bad_config(kwargs, word):
    arguments = {"in_dim": 3, "out_dim": 2} | kwargs
    with pytest.raises(ConfigError, match=word):
        Adapter(**arguments)
