"""Trials per minute with one and with two worker processes sharing a SQLite study.

Each configuration runs ``search.study.run_study(jobs=N)`` on the demo world into its own
SQLite file. With ``jobs=1`` the trials run in the calling process with ``--threads`` torch
threads (default: all usable cores). With ``jobs=2`` run_study starts two spawned worker
processes with ``cpu_count // 2`` torch threads each. To make the two configurations do the same work, the
space fixes every setting that changes a trial's cost (epochs, batch size, hidden width,
objective, cluster count) and samples only the learning rate and weight decay; pruning is
off. The prepared data and the source model are built beforehand, so the workers load them
from the cache.

Reported: trials per minute over run_study's whole wall time (worker start-up included) and
over the span from the first trial's start to the last trial's end as stored in the study.

Run: ``python -m benchmarks.workers [--quick] [--trials N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

from benchmarks import _common

NAME = "workers"
# Settings that fix a trial's cost. Only lr and weight_decay stay sampled.
FIXED_COST = {
    "epochs": 20,
    "batch_size": 32,
    "hidden": 256,
    "objective": "prototype-mse",
    "n_clusters": 16,
    "clip_norm": 1.0,
    "scheduler_factor": 0.7,
    "scheduler_patience": 5,
}
NEVER_PRUNE = {"threshold": -1.0, "median_startup_trials": 10**9}


def run_jobs(config, studies_dir: Path, jobs: int, trials: int, seed: int) -> dict:
    """Run `trials` trials with `jobs` workers; return trials per minute and the worker threads."""
    import optuna

    from search.study import run_study

    storage = f"sqlite:///{studies_dir / f'jobs{jobs}.db'}"
    summary = run_study(config, trials=trials, jobs=jobs, seed=seed, storage=storage, study_name=f"jobs{jobs}",
                        studies_dir=studies_dir)
    study = optuna.load_study(study_name=f"jobs{jobs}", storage=storage)
    finished = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    mean_trial = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished) / len(finished)
    cores = os.cpu_count() or 1
    return {
        "jobs": jobs,
        "torch_threads_per_worker": cores // jobs if jobs > 1 else _threads_now(),
        "trials": summary.counts.finished,
        "wall_s": summary.wall_seconds,
        "trials_per_min_wall": summary.counts.finished / summary.wall_seconds * 60,
        "span_s": span,
        "trials_per_min_span": len(finished) / span * 60 if span > 0 else None,
        "mean_trial_s": mean_trial,
    }


def _threads_now() -> int:
    import torch

    return torch.get_num_threads()


def run(args: argparse.Namespace) -> dict:
    from search.config import StudyConfig
    from search.objective import Objective

    _common.quiet_logs()
    threads = _common.benchmark_threads(args)
    trials = args.trials
    if trials is None:
        trials = 2 if args.quick else 12
    fixed = {**FIXED_COST, "epochs": 3} if args.quick else FIXED_COST
    space = _common.default_space(False, **fixed)

    with tempfile.TemporaryDirectory(prefix="adaptsearch-workers-") as folder:
        folder = Path(folder)
        world = _common.write_demo(folder / "world", args.quick)
        config = StudyConfig(source=world["source"], target=world["target"], space=space,
                             source_model=_common.source_model_config(args.quick))
        config = dataclasses.replace(config, pruner=dict(NEVER_PRUNE))
        studies_dir = folder / "studies"
        Objective(config, studies_dir / "cache").context
        rows = [run_jobs(config, studies_dir, jobs, trials, args.seed) for jobs in (1, 2)]

    one, two = rows
    speedup = two["trials_per_min_wall"] / one["trials_per_min_wall"]
    for row in rows:
        row["speedup_wall"] = row["trials_per_min_wall"] / one["trials_per_min_wall"]
    goals = [
        _common.goal(
            "two workers finish more trials per minute than one",
            "> 1.0x",
            speedup,
            speedup > 1.0,
            f"{os.cpu_count()} cores; wall time includes spawning the workers",
        )
    ]
    columns = [
        ("jobs", "workers", "d"),
        ("torch_threads_per_worker", "threads/worker", "d"),
        ("trials", "trials", "d"),
        ("wall_s", "wall s", ".1f"),
        ("trials_per_min_wall", "trials/min (wall)", ".1f"),
        ("trials_per_min_span", "trials/min (first start to last end)", ".1f"),
        ("mean_trial_s", "mean trial s", ".2f"),
        ("speedup_wall", "speed-up", ".2f"),
    ]
    return _common.publish(
        NAME,
        args,
        title=f"{trials} fixed-cost trials on SQLite",
        columns=columns,
        rows=rows,
        goals=goals,
        parameters={"trials": trials, "fixed": fixed, "sampled": ["lr", "weight_decay"], "storage": "sqlite",
                    "sampler_seed": args.seed, "main_process_threads": threads},
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=None, help="Trials per configuration (default 12, 2 with --quick).")
    parser.add_argument("--seed", type=int, default=0, help="Sampler seed.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads of the jobs=1 run (default: all usable cores, 1 with --quick).")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the written result."""
    return run(_common.parse_args(NAME, __doc__.splitlines()[0], argv, _options))


if __name__ == "__main__":
    main()
