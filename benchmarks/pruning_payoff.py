"""What pruning buys: the same search on the demo world with and without the pruner.

Both runs call ``search.study.run_study`` with the default space, the same sampler seed and
the same number of trials on one SQLite file (two study names). The run without pruning
uses pruner settings that can never fire (threshold -1, which no correlation is below, and
a median rule that needs more complete trials than the run has). The prepared data and the
source model are built once beforehand. The prototype cache is emptied before each run, so
both pay for their own K-means fits.

Reported per run: the best MOSI-valid correlation, the adapter epochs executed (reported
epochs summed over all trials), complete and pruned trial counts, and wall time. The two runs
sample the same first trials, then diverge, because the sampler learns from pruned trials
differently, so the run with pruning may also sample longer or shorter trials. A third row
replays the recorded trials of the run without pruning through the default pruner (see
`replay_through_pruner`): the same settings in the same order, which isolates what the pruner
cuts. Adapter epochs are the load-independent measure of the work pruning saves, and the goals
compare them.

With ``--parallel`` the two runs go to two worker processes at once, each in its own folder
(it prepares its own data and source model first, outside the timed search). On a 2-core
machine with one torch thread each this halves the benchmark's wall time. Both runs share the
machine, except that the run that ends last has it to itself for its tail.

A fourth row replays the same trials through the pruner with ``threshold_on: best``, which
judges a trial's best correlation so far instead of its latest one. ``--replay-storage URL``
skips both searches and replays a study stored by an earlier run (``--replay-study``, default
``without-pruning``) under both threshold rules, which takes seconds.

Run: ``python -m benchmarks.pruning_payoff [--quick] [--trials N] [--parallel]
[--keep-studies DIR]``, then for a replay ``python -m benchmarks.pruning_payoff
--replay-storage sqlite:///DIR/studies-payoff.db`` (``studies-1-payoff.db`` after
``--parallel``, where the run without pruning is the second worker's).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import shutil
import sqlite3
import tempfile
from pathlib import Path

from benchmarks import _common

NAME = "pruning_payoff"
# Settings under which NegativeCorrelationPruner never prunes: no value is below -1 and the
# median rule waits for more complete trials than any run here has.
NEVER_PRUNE = {"threshold": -1.0, "median_startup_trials": 10**9}


def run_search(config, studies_dir: Path, study_name: str, trials: int, seed: int, replay_pruner: dict | None = None) -> dict:
    """Run one search from an empty prototype cache; return its summary figures.

    With `replay_pruner` (pruner settings) the figures also hold, under ``"replay"``, the
    outcome of `replay_through_pruner` on the search's trials.
    """
    import optuna

    from adapters import prototypes
    from search.study import run_study

    shutil.rmtree(studies_dir / "cache" / "prototypes", ignore_errors=True)
    prototypes.clear_memory_cache()
    storage = f"sqlite:///{studies_dir / 'payoff.db'}"
    summary = run_study(config, trials=trials, seed=seed, storage=storage, study_name=study_name, studies_dir=studies_dir)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials_done = study.get_trials(deepcopy=False)
    figures = {
        "best_valid_corr": summary.best_value,
        "best_trial": summary.best_number,
        "adapter_epochs": sum(len(trial.intermediate_values) for trial in trials_done),
        "complete": summary.counts.complete,
        "pruned": summary.counts.pruned,
        "failed": summary.counts.failed,
        "wall_s": summary.wall_seconds,
        "original_settings_corr": summary.baseline_value,
    }
    if replay_pruner is not None:
        figures["replay"] = replay_through_pruner(trials_done, replay_pruner)
        figures["replay_best"] = replay_through_pruner(trials_done, {**replay_pruner, "threshold_on": "best"})
    return figures


def replay_through_pruner(trials: list, pruner_settings: dict) -> dict:
    """Run the recorded trials of a search without pruning through the pruner, in their order.

    Training is deterministic for given settings, so a trial run with pruning reports the
    same per-epoch values as its recorded run until it is pruned. Replaying the recorded
    values through `NegativeCorrelationPruner` therefore gives exactly what pruning would cut
    from this sequence of settings, apart from the sampler, which in a real search adapts to
    the pruned trials. Like the search, the replay never prunes the original-settings trial.
    """
    import optuna
    from optuna.trial import TrialState

    from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN
    from search.pruner import NegativeCorrelationPruner

    study = optuna.create_study(direction="maximize", pruner=NegativeCorrelationPruner.from_dict(pruner_settings))
    epochs, complete, pruned, best = 0, 0, 0, None
    for recorded in sorted(trials, key=lambda trial: trial.number):
        if recorded.state != TrialState.COMPLETE:
            continue
        trial = study.ask()
        may_prune = recorded.user_attrs.get(ORIGIN_ATTR) != ORIGINAL_SETTINGS_ORIGIN
        cut = False
        for step in sorted(recorded.intermediate_values):
            trial.report(recorded.intermediate_values[step], step)
            epochs += 1
            if may_prune and trial.should_prune():
                cut = True
                break
        if cut:
            study.tell(trial, state=TrialState.PRUNED)
            pruned += 1
        else:
            study.tell(trial, recorded.value)
            complete += 1
            best = recorded.value if best is None else max(best, recorded.value)
    return {"best_valid_corr": best, "adapter_epochs": epochs, "complete": complete, "pruned": pruned}


def _arm(label: str, config, studies_dir: Path, trials: int, seed: int, threads: int, replay_pruner: dict | None) -> dict:
    """Prepare the data and source model of `config` under `studies_dir`, then time one search."""
    import torch

    from search.objective import Objective

    _common.quiet_logs()
    torch.set_num_threads(threads)
    Objective(config, studies_dir / "cache").context
    return {"run": label, **run_search(config, studies_dir, label.replace(" ", "-"), trials, seed, replay_pruner)}


# Replay rows: label and the `threshold_on` value of the replayed pruner.
REPLAY_ROWS = (
    ("replay of the trials without pruning", "current"),
    ("replay, threshold on the best epoch so far", "best"),
)
REPLAY_COLUMNS = [
    ("run", "run", ""),
    ("best_valid_corr", "best valid r", ".4f"),
    ("adapter_epochs", "adapter epochs", "d"),
    ("complete", "complete", "d"),
    ("pruned", "pruned", "d"),
]


def replay_stored(args: argparse.Namespace) -> dict:
    """Replay a stored search without pruning through the default pruner under both threshold rules."""
    import optuna

    from search.pruner import NegativeCorrelationPruner

    _common.quiet_logs()
    from search.storage import check_study_exists, open_storage

    from adapters.errors import AdaptSearchError

    # A missing file or study ends the benchmark with one line, and no empty database is created.
    try:
        storage = open_storage(args.replay_storage, create=False, heartbeat_interval=None)
        check_study_exists(storage, args.replay_study, args.replay_storage)
    except AdaptSearchError as error:
        raise SystemExit(f"error: {error}") from None
    trials = optuna.load_study(study_name=args.replay_study, storage=storage).get_trials(deepcopy=False)
    if any(trial.state.name == "PRUNED" for trial in trials):
        raise SystemExit(
            f"study {args.replay_study!r} has pruned trials; a replay needs a study run without pruning "
            "(the 'without-pruning' study of an earlier run)"
        )
    recorded = [trial for trial in trials if trial.state.name == "COMPLETE"]
    rows = [{
        "run": f"stored study {args.replay_study}",
        "best_valid_corr": max((trial.value for trial in recorded), default=None),
        "adapter_epochs": sum(len(trial.intermediate_values) for trial in recorded),
        "complete": len(recorded),
        "pruned": 0,
    }]
    defaults = NegativeCorrelationPruner().to_dict()
    for label, threshold_on in REPLAY_ROWS:
        rows.append({"run": label, **replay_through_pruner(recorded, {**defaults, "threshold_on": threshold_on})})
    for row in rows[1:]:
        row["adapter_epochs_saved_share"] = 1.0 - row["adapter_epochs"] / rows[0]["adapter_epochs"]
    return _common.publish(
        NAME,
        args,
        title=f"replay of {len(recorded)} stored trials through the default pruner, with either threshold rule",
        columns=[*REPLAY_COLUMNS, ("adapter_epochs_saved_share", "epochs saved", ".1%")],
        rows=rows,
        goals=[],
        parameters={"replay_storage": args.replay_storage, "replay_study": args.replay_study, "pruner": defaults},
    )


def run(args: argparse.Namespace) -> dict:
    from search.config import StudyConfig

    if args.replay_storage is not None:
        return replay_stored(args)
    _common.quiet_logs()
    threads = _common.benchmark_threads(args)
    trials = args.trials
    if trials is None:
        trials = 2 if args.quick else 100

    with tempfile.TemporaryDirectory(prefix="adaptsearch-pruning-") as folder:
        folder = Path(folder)
        world = _common.write_demo(folder / "world", args.quick)
        pruned_config = StudyConfig(
            source=world["source"], target=world["target"], space=_common.default_space(args.quick),
            source_model=_common.source_model_config(args.quick),
        )
        unpruned_config = dataclasses.replace(pruned_config, pruner=dict(NEVER_PRUNE))
        # The search without pruning also replays its trials through the default pruner.
        arms = [("with pruning", pruned_config, None), ("without pruning", unpruned_config, dict(pruned_config.pruner))]
        if args.parallel:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(len(arms), mp_context=context) as pool:
                futures = [
                    pool.submit(_arm, label, config, folder / f"studies-{index}", trials, args.seed, threads, replay)
                    for index, (label, config, replay) in enumerate(arms)
                ]
                rows = [future.result() for future in futures]
        else:
            # One folder: the prepared data and source model are built once, before both runs.
            rows = [_arm(label, config, folder / "studies", trials, args.seed, threads, replay) for label, config, replay in arms]
        if args.keep_studies is not None:
            # The study databases, for --replay-storage later; the rest of the folder is deleted.
            args.keep_studies.mkdir(parents=True, exist_ok=True)
            for database in folder.glob("studies*/payoff.db"):
                _copy_sqlite(database, args.keep_studies / f"{database.parent.name}-payoff.db")

    with_pruning, without_pruning = rows
    replay = without_pruning.pop("replay")
    replay_best = without_pruning.pop("replay_best")
    for label, figures in ((REPLAY_ROWS[0][0], replay), (REPLAY_ROWS[1][0], replay_best)):
        rows.append({"run": label, "best_trial": None, "original_settings_corr": None, "failed": 0, "wall_s": None, **figures})
    for row in rows:
        row["epochs_per_minute"] = row["adapter_epochs"] / row["wall_s"] * 60 if row["wall_s"] else None
    saved = (
        1.0 - with_pruning["adapter_epochs"] / without_pruning["adapter_epochs"] if without_pruning["adapter_epochs"] else None
    )
    wall_saved = 1.0 - with_pruning["wall_s"] / without_pruning["wall_s"] if without_pruning["wall_s"] else None
    corr_gap = (
        None
        if with_pruning["best_valid_corr"] is None or without_pruning["best_valid_corr"] is None
        else with_pruning["best_valid_corr"] - without_pruning["best_valid_corr"]
    )
    replay_saved = (
        1.0 - replay["adapter_epochs"] / without_pruning["adapter_epochs"] if without_pruning["adapter_epochs"] else None
    )
    replay_gap = (
        None
        if replay["best_valid_corr"] is None or without_pruning["best_valid_corr"] is None
        else replay["best_valid_corr"] - without_pruning["best_valid_corr"]
    )
    goals = [
        _common.goal(
            "pruning runs fewer adapter epochs at no loss of best correlation",
            ">= 40% fewer adapter epochs, best corr within 0.01",
            saved,
            None if saved is None or corr_gap is None else saved >= 0.40 and corr_gap >= -0.01,
            f"measured = share of adapter epochs saved; best corr difference {corr_gap:+.4f}" if corr_gap is not None else "",
        ),
        _common.goal(
            "the same trials replayed through the pruner",
            ">= 40% fewer adapter epochs, best corr within 0.01",
            replay_saved,
            None if replay_saved is None or replay_gap is None else replay_saved >= 0.40 and replay_gap >= -0.01,
            f"same settings in the same order, so the sampler plays no part; best corr difference {replay_gap:+.4f}"
            if replay_gap is not None
            else "",
        ),
    ]
    columns = [
        ("run", "run", ""),
        ("best_valid_corr", "best valid r", ".4f"),
        ("best_trial", "best trial", ""),
        ("original_settings_corr", "original settings r", ".4f"),
        ("adapter_epochs", "adapter epochs", "d"),
        ("complete", "complete", "d"),
        ("pruned", "pruned", "d"),
        ("wall_s", "wall s", ".1f"),
        ("epochs_per_minute", "epochs/min", ".0f"),
    ]
    return _common.publish(
        NAME,
        args,
        title=f"{trials}-trial search on the demo world, sampler seed {args.seed} ({threads} threads)",
        columns=columns,
        rows=rows,
        goals=goals,
        parameters={"trials": trials, "sampler_seed": args.seed, "threads": threads, "space": "default (search/space.yaml)",
                    "never_prune_settings": NEVER_PRUNE, "parallel": args.parallel},
        extra={"adapter_epochs_saved_share": saved, "wall_time_saved_share": wall_saved, "best_corr_difference": corr_gap,
               "replay_adapter_epochs_saved_share": replay_saved, "replay_best_corr_difference": replay_gap},
    )


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database through SQLite's backup API, which includes its write-ahead log."""
    with contextlib.closing(sqlite3.connect(source)) as reader, contextlib.closing(sqlite3.connect(target)) as writer:
        reader.backup(writer)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=None, help="Trials per run (default 100, 2 with --quick).")
    parser.add_argument("--seed", type=int, default=0, help="Sampler seed of both runs.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: all usable cores, 1 with --quick).")
    parser.add_argument(
        "--parallel", action="store_true", help="Run the two searches at once in two worker processes (use with --threads 1)."
    )
    parser.add_argument(
        "--replay-storage", default=None,
        help="Storage URL of a study stored by an earlier run without pruning: replay it under both threshold rules only.",
    )
    parser.add_argument("--replay-study", default="without-pruning", help="Study name for --replay-storage.")
    parser.add_argument(
        "--keep-studies", type=Path, default=None,
        help="Folder to copy the runs' study databases into (studies-payoff.db, or studies-0/-1 with --parallel).",
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the written result."""
    return run(_common.parse_args(NAME, __doc__.splitlines()[0], argv, _options))


if __name__ == "__main__":
    main()
