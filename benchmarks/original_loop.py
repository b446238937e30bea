"""adaptsearch's training loop beside a reference loop written the way the original script trained.

The reference loop is written here as a baseline, in the original script's manner:

* the training set is a Python list of per-sample dicts ``{"visual": t, "audio": t, "text": t}``
  (one float32 tensor per modality and sample);
* a ``torch.utils.data.DataLoader`` shuffles it and batches it with the default collate
  function, which stacks the per-sample tensors key by key on every step;
* each modality has its own Adam optimiser; every step zeroes all three, sums the three
  prototype-MSE losses, calls backward once, clips each adapter's gradients and steps the
  three optimisers one after the other.

Both loops train the same `adapters.models.Adapter` networks (hidden 256, depth 2, layer
norm, dropout 0.1) on the same demo-world MOSI-size rows toward the same K-means prototypes
with the same batch size. adaptsearch's loop is `adapters.trainer.train_adapters`, of which
only the training pass (``_run_epoch``) is timed, so neither side includes evaluation.

"matmuls alone" is the epoch's matmul FLOPs (see ``benchmarks.throughput``) divided by the
measured matmul rate of the same shapes: no loop can train an epoch faster, so the reference
epoch time divided by it bounds the speed-up any loop can reach over the reference.

Run: ``python -m benchmarks.original_loop [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks import _common, throughput

NAME = "original_loop"
BATCH_SIZES = (16, 32, 128, 256)
GOAL_BATCH = 32
GOAL_SPEEDUP = 4.0
HIDDEN = 256


class ReferenceLoop:
    """The original script's way of training: list-of-dicts DataLoader, one Adam per modality.

    Parameters
    ----------
    samples : list of dict of str to tensor of shape (d_m,)
        Training rows, one dict per sample.
    adapters : dict of str to Adapter
    objectives : dict of str to alignment objective
        ``objective(adapted, generator) -> loss``, the same objects adaptsearch uses.
    config : TrainConfig
        Supplies lr, weight decay, clip norm and batch size.
    """

    def __init__(self, samples, adapters, objectives, config) -> None:
        self.adapters = adapters
        self.objectives = objectives
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.loader = DataLoader(samples, batch_size=config.batch_size, shuffle=True, generator=self.generator)
        self.optimizers = {
            modality: torch.optim.Adam(adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            for modality, adapter in adapters.items()
        }

    def run_epoch(self) -> float:
        """Train one pass over the loader; return the mean summed loss per step."""
        for adapter in self.adapters.values():
            adapter.train()
        total, steps = 0.0, 0
        for batch in self.loader:
            for optimizer in self.optimizers.values():
                optimizer.zero_grad()

            losses = []
            for modality, adapter in self.adapters.items():
                adapted = adapter(batch[modality])
                losses.append(self.objectives[modality](adapted, self.generator))
            loss = sum(losses)

            loss.backward()
            for adapter in self.adapters.values():
                nn.utils.clip_grad_norm_(adapter.parameters(), self.config.clip_norm)
            for optimizer in self.optimizers.values():
                optimizer.step()

            total += loss.item()
            steps += 1
        return total / max(steps, 1)


def reference_epoch_times(context, config, epochs: int) -> list[float]:
    """Time `epochs` epochs of the reference loop; return every epoch's seconds."""
    from adapters.models import build_adapters
    from adapters.objectives import build_objectives

    modalities = context.modalities
    train = context.target_data.splits["train"]
    samples = [
        {modality: torch.from_numpy(train.features[modality][row].copy()) for modality in modalities}
        for row in range(len(train))
    ]
    torch.manual_seed(config.seed)
    adapters = build_adapters(
        context.target_data.widths, context.source_data.widths, modalities,
        hidden=config.hidden, depth=config.depth, dropout=config.dropout, norm=config.norm,
    )
    objectives = build_objectives(config, context.source_data, modalities)
    loop = ReferenceLoop(samples, dict(adapters.items()), objectives, config)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        loop.run_epoch()
        times.append(time.perf_counter() - started)
    return times


def adaptsearch_epoch_times(context, config, cache_dir: Path) -> list[float]:
    """Run `adapters.trainer.train_adapters` and return the seconds of each training pass."""
    from adapters import trainer

    times: list[float] = []
    original = trainer._run_epoch

    def timed_pass(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        times.append(time.perf_counter() - started)
        return result

    with _common.patched(trainer, "_run_epoch", timed_pass):
        trainer.train_adapters(context.source_model, context.source_data, context.target_data, config, cache_dir=cache_dir)
    return times


def run(args: argparse.Namespace) -> dict:
    from adapters.params import TrainConfig
    from adapters.pipeline import prepare_context

    _common.quiet_logs()
    threads = _common.benchmark_threads(args)
    epochs = 3 if args.quick else args.epochs
    batch_sizes = (GOAL_BATCH,) if args.quick else BATCH_SIZES

    rows = []
    with tempfile.TemporaryDirectory(prefix="adaptsearch-original-loop-") as folder:
        folder = Path(folder)
        world = _common.write_demo(folder / "world", args.quick)
        context = prepare_context(
            world["source"], world["target"], _common.source_model_config(args.quick), folder / "cache"
        )
        rows_per_epoch = len(context.target_data.splits["train"])
        shapes = throughput.layer_shapes(
            {m: context.target_data.widths[m] for m in context.modalities},
            {m: context.source_data.widths[m] for m in context.modalities},
            HIDDEN,
        )
        epoch_flops = 3 * throughput.forward_flops_per_row(shapes) * rows_per_epoch
        for batch in batch_sizes:
            config = TrainConfig(batch_size=batch, hidden=HIDDEN, depth=2, epochs=epochs, objective="prototype-mse", seed=0)
            # adaptsearch first, then the reference; each drops its first epoch as a warm-up.
            ours = adaptsearch_epoch_times(context, config, folder / "cache")[1:]
            reference = reference_epoch_times(context, config, epochs)[1:]
            ours_s, reference_s = _common.Timing(ours).median, _common.Timing(reference).median
            # An epoch can take no less than its matmuls alone, which bounds any loop's speed-up.
            matmul = throughput.matmul_rate(shapes, batch, min_seconds=0.02 if args.quick else 0.3, repeats=3 if args.quick else 5)
            matmul_only_s = epoch_flops / (matmul["gflops"] * 1e9)
            rows.append(
                {
                    "batch": batch,
                    "reference_epoch_ms": reference_s * 1e3,
                    "adaptsearch_epoch_ms": ours_s * 1e3,
                    "speedup": reference_s / ours_s,
                    "reference_rows_per_s": rows_per_epoch / reference_s,
                    "adaptsearch_rows_per_s": rows_per_epoch / ours_s,
                    "matmul_only_epoch_ms": matmul_only_s * 1e3,
                    "speedup_bound": reference_s / matmul_only_s,
                    "reference_runs_s": reference,
                    "adaptsearch_runs_s": ours,
                }
            )

    at_goal = next((row for row in rows if row["batch"] == GOAL_BATCH), None)
    speedup = at_goal["speedup"] if at_goal else None
    goals = [
        _common.goal(
            f"adaptsearch >= {GOAL_SPEEDUP:g}x faster than the reference loop at batch {GOAL_BATCH}",
            f">= {GOAL_SPEEDUP:g}x",
            speedup,
            None if speedup is None else speedup >= GOAL_SPEEDUP,
            "median epoch time, training pass only",
        )
    ]
    parameters = {
        "threads": threads,
        "epochs_per_loop": epochs,
        "warmup_epochs": 1,
        "rows_per_epoch": rows_per_epoch,
        "hidden": HIDDEN,
        "objective": "prototype-mse",
    }
    columns = [
        ("batch", "batch", "d"),
        ("reference_epoch_ms", "reference epoch ms", ".1f"),
        ("adaptsearch_epoch_ms", "adaptsearch epoch ms", ".1f"),
        ("speedup", "speed-up", ".2f"),
        ("matmul_only_epoch_ms", "matmuls alone ms", ".1f"),
        ("speedup_bound", "speed-up bound", ".2f"),
        ("reference_rows_per_s", "reference rows/s", ".0f"),
        ("adaptsearch_rows_per_s", "adaptsearch rows/s", ".0f"),
    ]
    return _common.publish(
        NAME, args, title=f"training pass per epoch ({threads} threads)", columns=columns, rows=rows, goals=goals,
        parameters=parameters,
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=8, help="Epochs per loop and batch size; the first is a warm-up.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: all usable cores, 1 with --quick).")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the written result."""
    return run(_common.parse_args(NAME, __doc__.splitlines()[0], argv, _options))


if __name__ == "__main__":
    main()
