"""Epoch throughput of adapter training against the matmul rate of the same layer shapes.

Question: how close does one training epoch come to the machine's limit for these shapes?

1. The reference rate: torch matmuls (float32, torch threads = all usable cores) of exactly
   the shapes one training step multiplies. Each linear layer ``W`` of shape (out, in) at
   batch ``B`` takes three: forward ``X @ W.T`` (B x in by in x out), input gradient
   ``G @ W`` (B x out by out x in) and weight gradient ``G.T @ X`` (out x B by B x in), each
   ``2 * B * in * out`` FLOPs. The reference runs the 18 matmuls of the six layers back to
   back and reports FLOPs / seconds.
2. The training rate: `adapters.trainer.train_adapters` on the demo world's MOSI-size target
   (1284 training rows, widths visual 65 -> 713, audio 29 -> 74, text 768 -> 300, hidden
   512, depth 2, prototype-MSE objective), timing only its per-epoch training pass
   (``adapters.trainer._run_epoch``: batching, forward, loss, backward, clipping, Adam).
   Per-epoch evaluation is not counted here; ``trial_overhead`` measures it.

FLOP count of an epoch: ``3 * rows * sum_m 2 * (in_m * hidden + hidden * out_m)``, i.e.
forward + backward = 3 x the forward matmul FLOPs. LayerNorm, ReLU, dropout, the loss and the
optimiser update are not counted, so they show up as a lower achieved rate.

Run: ``python -m benchmarks.throughput [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import _common

NAME = "throughput"
BATCH_SIZES = (16, 32, 128, 256, 512)
HIDDEN = 512
GOAL_SHARE = 0.60
GOAL_MIN_BATCH = 256


def layer_shapes(in_widths: dict[str, int], out_widths: dict[str, int], hidden: int) -> list[tuple[int, int]]:
    """Return the (in, out) shape of every linear layer of the depth-2 adapters."""
    shapes = []
    for modality in in_widths:
        shapes += [(in_widths[modality], hidden), (hidden, out_widths[modality])]
    return shapes


def forward_flops_per_row(shapes: list[tuple[int, int]]) -> int:
    """Return the matmul FLOPs of one row's forward pass: ``sum 2 * in * out``."""
    return sum(2 * fan_in * fan_out for fan_in, fan_out in shapes)


def matmul_rate(shapes: list[tuple[int, int]], batch: int, *, min_seconds: float, repeats: int) -> dict:
    """Time the 3 matmuls per layer of one training step at `batch`; return GFLOP/s (median of repeats)."""
    generator = torch.Generator().manual_seed(0)
    operands = []
    for fan_in, fan_out in shapes:
        x = torch.randn(batch, fan_in, generator=generator)
        weight = torch.randn(fan_out, fan_in, generator=generator)
        gradient = torch.randn(batch, fan_out, generator=generator)
        operands.append((x, weight, gradient))

    def step() -> None:
        for x, weight, gradient in operands:
            torch.mm(x, weight.t())
            torch.mm(gradient, weight)
            torch.mm(gradient.t(), x)

    # Enough steps per timed run that one run lasts about min_seconds.
    step()
    probe = _common.time_repeats(step, repeats=3, warmup=0).median
    steps = max(1, int(min_seconds / max(probe, 1e-7)))
    timing = _common.time_repeats(lambda: [step() for _ in range(steps)], repeats=repeats, warmup=0)
    flops = 3 * forward_flops_per_row(shapes) * batch * steps
    return {"gflops": flops / timing.median / 1e9, "steps_per_run": steps, **timing.to_dict()}


def square_matmul_rate(size: int, repeats: int) -> float:
    """Return the GFLOP/s of one float32 ``size x size`` matmul (median of repeats), the machine's peak-like rate."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    timing = _common.time_repeats(lambda: torch.mm(a, b), repeats=repeats, warmup=2)
    return 2 * size**3 / timing.median / 1e9


def training_rate(context, batch: int, epochs: int, cache_dir: Path) -> dict:
    """Train with `batch` for `epochs` epochs and time each training pass; the first is a warm-up."""
    from adapters import trainer
    from adapters.params import TrainConfig

    config = TrainConfig(
        batch_size=batch, hidden=HIDDEN, depth=2, epochs=epochs, objective="prototype-mse", n_clusters=16, seed=0
    )
    passes: list[float] = []
    original = trainer._run_epoch

    def timed_pass(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        passes.append(time.perf_counter() - started)
        return result

    with _common.patched(trainer, "_run_epoch", timed_pass):
        trainer.train_adapters(context.source_model, context.source_data, context.target_data, config, cache_dir=cache_dir)
    measured = passes[1:] if len(passes) > 1 else passes
    return {"epoch_runs_s": measured, "epoch_s": _common.Timing(measured).median}


def run(args: argparse.Namespace) -> dict:
    _common.quiet_logs()
    threads = _common.benchmark_threads(args)
    epochs = 3 if args.quick else args.epochs
    batch_sizes = (16, 256) if args.quick else BATCH_SIZES

    with tempfile.TemporaryDirectory(prefix="adaptsearch-throughput-") as folder:
        folder = Path(folder)
        from adapters.pipeline import prepare_context

        world = _common.write_demo(folder / "world", args.quick)
        context = prepare_context(
            world["source"], world["target"], _common.source_model_config(args.quick), folder / "cache"
        )
        in_widths = {m: context.target_data.widths[m] for m in context.modalities}
        out_widths = {m: context.source_data.widths[m] for m in context.modalities}
        rows_per_epoch = len(context.target_data.splits["train"])
        shapes = layer_shapes(in_widths, out_widths, HIDDEN)
        per_row = forward_flops_per_row(shapes)
        peak = square_matmul_rate(256 if args.quick else 2048, repeats=3 if args.quick else 7)

        rows = []
        for batch in batch_sizes:
            reference = matmul_rate(shapes, batch, min_seconds=0.02 if args.quick else 0.3, repeats=3 if args.quick else 7)
            trained = training_rate(context, batch, epochs, folder / "cache")
            epoch_flops = 3 * per_row * rows_per_epoch
            achieved = epoch_flops / trained["epoch_s"] / 1e9
            rows.append(
                {
                    "batch": batch,
                    "steps_per_epoch": -(-rows_per_epoch // batch),
                    "epoch_ms": trained["epoch_s"] * 1e3,
                    "rows_per_s": rows_per_epoch / trained["epoch_s"],
                    "train_gflops": achieved,
                    "matmul_gflops": reference["gflops"],
                    "share": achieved / reference["gflops"],
                    "epoch_runs_s": trained["epoch_runs_s"],
                    "matmul_runs_s": reference["runs_s"],
                    "matmul_steps_per_run": reference["steps_per_run"],
                }
            )

    large = [row for row in rows if row["batch"] >= GOAL_MIN_BATCH]
    worst = min(row["share"] for row in large) if large else None
    goals = [
        _common.goal(
            f"training rate >= {GOAL_SHARE:.0%} of matmul rate at batch >= {GOAL_MIN_BATCH}",
            f">= {GOAL_SHARE}",
            worst,
            None if worst is None else worst >= GOAL_SHARE,
            "lowest share over the batch sizes >= 256",
        )
    ]
    parameters = {
        "threads": threads,
        "epochs_per_batch": epochs,
        "warmup_epochs": 1,
        "rows_per_epoch": rows_per_epoch,
        "in_widths": in_widths,
        "out_widths": out_widths,
        "hidden": HIDDEN,
        "objective": "prototype-mse",
        "forward_flops_per_row": per_row,
        "flop_formula": "epoch FLOPs = 3 * rows * sum over linear layers of 2 * in * out",
        "square_matmul_gflops": peak,
    }
    columns = [
        ("batch", "batch", "d"),
        ("steps_per_epoch", "steps/epoch", "d"),
        ("epoch_ms", "epoch ms", ".1f"),
        ("rows_per_s", "rows/s", ".0f"),
        ("train_gflops", "train GFLOP/s", ".1f"),
        ("matmul_gflops", "matmul GFLOP/s", ".1f"),
        ("share", "share", ".0%"),
    ]
    return _common.publish(
        NAME,
        args,
        title=f"adapter training vs matmul rate ({threads} threads, square matmul {peak:.1f} GFLOP/s)",
        columns=columns,
        rows=rows,
        goals=goals,
        parameters=parameters,
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=12, help="Epochs per batch size; the first is a warm-up.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: all usable cores, 1 with --quick).")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the written result."""
    return run(_common.parse_args(NAME, __doc__.splitlines()[0], argv, _options))


if __name__ == "__main__":
    main()
