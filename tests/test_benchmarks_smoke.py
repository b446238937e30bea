"""Smoke tests of the benchmark entry points: each runs in --quick mode and writes its JSON.

No timing is asserted; the figures of a quick run on tiny data mean nothing. The tests check
that every entry point still runs against the current library and writes the keys that
benchmarks/README.md and the project README read.
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from benchmarks._common import COMMON_KEYS


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """The benchmarks set torch's thread count; give later tests the count they started with."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_quick(name: str, tmp_path, *extra: str) -> dict:
    module = importlib.import_module(f"benchmarks.{name}")
    returned = module.main(["--quick", "--results-dir", str(tmp_path), *extra])
    written = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
    assert returned["benchmark"] == name
    for key in COMMON_KEYS:
        assert key in written, f"{name}.json lacks {key!r}"
    assert written["quick"] is True
    assert written["rows"], f"{name}.json has no rows"
    for item in written["goals"]:
        assert set(item) == {"goal", "target", "measured", "met", "note"}
    return written


def test_throughput_quick(tmp_path):
    result = run_quick("throughput", tmp_path)
    row = result["rows"][0]
    for key in ("batch", "epoch_ms", "train_gflops", "matmul_gflops", "share"):
        assert key in row
    assert row["train_gflops"] > 0
    assert "flop_formula" in result["parameters"]


def test_original_loop_quick(tmp_path):
    result = run_quick("original_loop", tmp_path)
    row = result["rows"][0]
    assert row["batch"] == 32
    for key in ("reference_epoch_ms", "adaptsearch_epoch_ms", "speedup"):
        assert row[key] > 0


def test_reference_loop_trains_adapters():
    from benchmarks.original_loop import ReferenceLoop
    from adapters.models import Adapter
    from adapters.params import TrainConfig

    class MeanTarget:
        def __call__(self, adapted, generator):
            return adapted.pow(2).mean()

    torch.manual_seed(0)
    adapters = {"audio": Adapter(3, 2, hidden=4), "text": Adapter(5, 2, hidden=4)}
    samples = [{"audio": torch.randn(3), "text": torch.randn(5)} for _ in range(10)]
    loop = ReferenceLoop(samples, adapters, {m: MeanTarget() for m in adapters}, TrainConfig(batch_size=4, lr=1e-2))
    before = [p.detach().clone() for adapter in adapters.values() for p in adapter.parameters()]
    first = loop.run_epoch()
    after = [p.detach() for adapter in adapters.values() for p in adapter.parameters()]

    # Every adapter has its own optimiser, so every parameter moves after one epoch.
    assert all(not torch.equal(old, new) for old, new in zip(before, after))
    assert first > 0


def test_trial_overhead_quick(tmp_path):
    result = run_quick("trial_overhead", tmp_path)
    assert result["components"], "no component timings"
    total = result["total"]
    assert total["trial"] == "all"
    shares = [total[f"{name}_share"] for name in ("training", "evaluation", "storage", "rest")]
    assert all(share is not None for share in shares)
    # The parts and the rest make up the whole trial time.
    parts = sum(v for k, v in total.items() if k.endswith("_s") and k not in ("wall_s", "ask_to_first_step_s"))
    assert parts == pytest.approx(total["wall_s"], rel=1e-6)


def test_pruning_payoff_quick(tmp_path):
    result = run_quick("pruning_payoff", tmp_path, "--keep-studies", str(tmp_path / "kept"))
    runs = {row["run"]: row for row in result["rows"]}
    assert set(runs) == {
        "with pruning", "without pruning", "replay of the trials without pruning", "replay, threshold on the best epoch so far"
    }
    # The never-prune settings must really never prune.
    assert runs["without pruning"]["pruned"] == 0
    for row in runs.values():
        assert row["complete"] + row["pruned"] == result["parameters"]["trials"]
        assert row["adapter_epochs"] > 0
    # A replay can only cut epochs from the recorded trials.
    assert runs["replay of the trials without pruning"]["adapter_epochs"] <= runs["without pruning"]["adapter_epochs"]

    # The kept database replays on its own, without a search, to the same figures.
    replayed = run_quick("pruning_payoff", tmp_path, "--replay-storage", f"sqlite:///{tmp_path / 'kept' / 'studies-payoff.db'}")
    again = {row["run"]: row for row in replayed["rows"]}
    for label in ("replay of the trials without pruning", "replay, threshold on the best epoch so far"):
        assert again[label]["adapter_epochs"] == runs[label]["adapter_epochs"]
        assert again[label]["best_valid_corr"] == runs[label]["best_valid_corr"]
    # A wrong file name ends with one line and creates no empty database.
    with pytest.raises(SystemExit, match=r"^error: study database .*payoff\.db not found"):
        run_quick("pruning_payoff", tmp_path, "--replay-storage", f"sqlite:///{tmp_path / 'kept' / 'payoff.db'}")
    assert not (tmp_path / "kept" / "payoff.db").exists()


def test_replay_cuts_trial_where_pruner_stops_it():
    import optuna

    from benchmarks.pruning_payoff import replay_through_pruner
    from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN

    def recorded(number: int, curve: list[float], **attrs) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(
            value=max(curve), intermediate_values=dict(enumerate(curve, start=1)),
            params={}, distributions={}, user_attrs=attrs,
        )

    good = [0.5, 0.6, 0.7, 0.7]
    trials = [
        # Negative throughout, but the original-settings trial is never pruned.
        recorded(0, [-0.2, -0.2, -0.2, -0.2], **{ORIGIN_ATTR: ORIGINAL_SETTINGS_ORIGIN}),
        recorded(1, good),
        recorded(2, [0.1, -0.3, -0.3, -0.3]),
    ]
    for number, trial in enumerate(trials):
        trial.number = number

    replay = replay_through_pruner(trials, {"threshold": 0.0, "warmup_epochs": 2, "median_startup_trials": 1000})

    # Trial 2 reports epoch 2 (below 0 at the warm-up) and stops there: 4 + 4 + 2 epochs.
    assert replay["adapter_epochs"] == 10
    assert replay["pruned"] == 1
    assert replay["complete"] == 2
    assert replay["best_valid_corr"] == 0.7


@pytest.mark.slow
def test_workers_quick(tmp_path):
    result = run_quick("workers", tmp_path)
    assert [row["jobs"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["trials"] == result["parameters"]["trials"]
        assert row["trials_per_min_wall"] > 0


def test_prepare_memory_quick(tmp_path):
    result = run_quick("prepare_memory", tmp_path)
    modes = {(row["mode"], row["page_cache"]) for row in result["rows"]}
    assert modes == {("raw", "cold"), ("prepare", "cold"), ("raw", "warm"), ("prepare", "warm")}
    for row in result["rows"]:
        assert row["peak_mb"] > 0
        assert row["mb_per_s"] > 0
