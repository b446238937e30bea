import pytest
import torch

from adapters.objectives import OBJECTIVES, MomentsObjective, PrototypeMSEObjective, SinkhornObjective, build_objectives
from adapters.params import TrainConfig
from adapters.prototypes import Prototypes, clear_memory_cache
from synthetic_train import make_pair

CENTERS = torch.tensor([[2.0, 0.0], [-2.0, 0.0]])
WEIGHTS = torch.tensor([0.5, 0.5])


def _sinkhorn(reg=0.05):
    return SinkhornObjective(Prototypes(CENTERS, WEIGHTS), TrainConfig(objective="sinkhorn", sinkhorn_reg=reg))


def test_registry_names():
    assert set(OBJECTIVES) == {"prototype-mse", "sinkhorn", "moments"}


def test_prototype_mse_is_zero_only_on_single_prototype():
    objective = PrototypeMSEObjective(Prototypes(CENTERS[:1], torch.ones(1)), TrainConfig())
    generator = torch.Generator().manual_seed(0)

    assert objective(CENTERS[:1].repeat(4, 1), generator).item() == 0.0
    # One prototype at (2, 0): the row (0, 0) is 4 away in the first feature, 0 in the second: MSE 2.
    assert objective(torch.zeros(3, 2), generator).item() == pytest.approx(2.0)


def test_sinkhorn_prefers_covering_batch_to_collapsed_batch():
    generator = torch.Generator().manual_seed(0)
    covering = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [2.0, 0.1], [-2.0, 0.1]])
    collapsed = torch.zeros(4, 2)

    # A batch on both prototypes transports at almost no cost; a batch at their mean pays 4 per row over 2 features.
    assert _sinkhorn()(covering, generator).item() < 0.05
    assert _sinkhorn()(collapsed, generator).item() == pytest.approx(2.0, rel=1e-3)


def test_sinkhorn_gradient_pulls_toward_prototypes():
    adapted = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)

    _sinkhorn()(adapted, torch.Generator()).backward()

    # The row at +1 is transported to +2 and the row at -1 to -2, so descent moves them outward.
    assert adapted.grad[0, 0] < 0
    assert adapted.grad[1, 0] > 0
    assert torch.isfinite(adapted.grad).all()


def test_sinkhorn_small_reg_stays_finite():
    adapted = torch.randn(16, 2) * 10

    loss = _sinkhorn(reg=1e-3)(adapted, torch.Generator())

    assert torch.isfinite(loss)


def test_moments_values():
    objective = MomentsObjective(torch.zeros(2), torch.eye(2))
    batch = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]) * (3 / 4) ** 0.5

    # Mean 0 and unbiased covariance I match the statistics exactly.
    assert objective(batch, torch.Generator()).item() == pytest.approx(0.0, abs=1e-6)
    # A single row contributes only the mean term: mean((1, 3)^2) = 5.
    assert objective(torch.tensor([[1.0, 3.0]]), torch.Generator()).item() == pytest.approx(5.0)


@pytest.mark.parametrize("name", ["prototype-mse", "sinkhorn", "moments"])
def test_build_objectives_gives_differentiable_losses(name, tmp_path):
    clear_memory_cache()
    source, _ = make_pair()
    config = TrainConfig(objective=name, n_clusters=4)

    objectives = build_objectives(config, source, config.modalities, tmp_path)
    adapted = torch.randn(5, source.widths["text"], requires_grad=True)
    loss = objectives["text"](adapted, torch.Generator().manual_seed(0))
    loss.backward()

    assert set(objectives) == {"visual", "audio", "text"}
    assert loss.ndim == 0
    assert adapted.grad.abs().sum() > 0


def test_sinkhorn_plan_marginals_match_pot():
    import numpy as np
    import ot

    from adapters.objectives import sinkhorn_plan

    rng = np.random.default_rng(0)
    cost = rng.uniform(0, 3, size=(8, 5))
    weights = rng.dirichlet(np.ones(5))

    plan = sinkhorn_plan(cost, weights, 0.1, 500)
    reference = ot.sinkhorn(np.full(8, 1 / 8), weights, cost, 0.1, numItermax=5000, stopThr=1e-12)

    assert np.allclose(plan.sum(axis=0), weights)
    assert np.allclose(plan.sum(axis=1), 1 / 8, atol=1e-6)
    assert np.allclose(plan, reference, atol=1e-6)


def test_sinkhorn_plan_underflow_falls_back_to_log_domain():
    import numpy as np

    from adapters.objectives import sinkhorn_plan

    # Column 1 is 1000 cost units from every row: its kernel entries underflow at reg 0.5.
    cost = np.array([[0.0, 1000.0], [1.0, 1000.0]])

    plan = sinkhorn_plan(cost, np.array([0.5, 0.5]), 0.5, 200)

    assert np.isfinite(plan).all()
    assert np.allclose(plan.sum(axis=0), [0.5, 0.5], atol=1e-6)
