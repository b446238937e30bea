"""Where a search trial's wall time goes, and how soon training starts after a trial is sampled.

Two parts, both on the demo world (MOSI-size target, written to a temporary folder):

Components, timed alone (median of repeats):
  * opening the prepared data in a fresh process: ``prepare_dataset`` on a warm cache, which
    hashes every input file for the fingerprint and then reads the HDF5 cache, and
    ``load_prepared`` alone;
  * K-means prototypes of the three source modalities: cold fits at the default and the
    largest cluster count of the default space, and cached look-ups from memory and disk;
  * loading the cached source model;
  * one evaluation (adapters on MOSI valid, source model, metrics), which every epoch runs.

Trials: ``search.study.run_study`` with the default space on SQLite, with the library's
functions wrapped by timers: training passes (``adapters.trainer._run_epoch``), evaluation,
prototypes (``build_objectives``: a K-means fit whenever a trial samples a cluster count
not seen before), diagnostics, best-state copies, Optuna storage calls (every method of the
RDB storage and its cache, counted once at the outermost call), the sampler and the pruner.
A trial runs from one ``Study.ask`` to the next (the last one to the end of its ``tell``),
so the storage calls of the study loop between trials count too. "ask to first step" is the
time from entering ``Study.ask`` to entering the first training pass.

Run: ``python -m benchmarks.trial_overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import _common

NAME = "trial_overhead"
GOAL_OVERHEAD_SHARE = 0.10
GOAL_START_S = 0.5

CATEGORIES = (
    "training",
    "evaluation",
    "prototypes",
    "diagnostics",
    "state_copy",
    "data_tensors",
    "storage",
    "sampler",
    "pruner",
)


class TrialRecorder:
    """Accumulates wrapped-call seconds per trial; a trial starts when ``Study.ask`` is entered."""

    def __init__(self) -> None:
        self.trials: list[dict] = []
        self.depth = threading.local()
        self.last_end = 0.0

    def start_trial(self, now: float) -> None:
        self.finish_trial(now)
        self.trials.append({"started": now, "ended": None, "first_step": None, **{c: 0.0 for c in CATEGORIES}})

    def finish_trial(self, now: float) -> None:
        if self.trials and self.trials[-1]["ended"] is None:
            self.trials[-1]["ended"] = now

    def wrap(self, category: str, function, *, outermost_of: str | None = None):
        """Return `function` timed under `category`; calls nested in another `outermost_of` call are not counted."""
        recorder = self

        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return function(*args, **kwargs)
            group = outermost_of or category
            depth = getattr(recorder.depth, group, 0)
            setattr(recorder.depth, group, depth + 1)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(recorder.depth, group, depth)
                ended = time.perf_counter()
                recorder.last_end = ended
                if depth == 0 and recorder.trials and recorder.trials[-1]["ended"] is None:
                    recorder.trials[-1][category] += ended - started

        return timed


def _patch_everything(recorder: TrialRecorder, stack) -> None:
    """Install the timers of the module docstring; `stack` undoes them."""
    import optuna
    from optuna.storages import RDBStorage
    from optuna.storages._cached_storage import _CachedStorage

    from adapters import trainer
    from search.pruner import NegativeCorrelationPruner

    original_ask = optuna.study.Study.ask

    def ask(self, *args, **kwargs):
        recorder.start_trial(time.perf_counter())
        return original_ask(self, *args, **kwargs)

    stack.enter_context(_common.patched(optuna.study.Study, "ask", ask))

    original_pass = trainer._run_epoch

    def training_pass(*args, **kwargs):
        if recorder.trials and recorder.trials[-1]["first_step"] is None:
            recorder.trials[-1]["first_step"] = time.perf_counter()
        return original_pass(*args, **kwargs)

    stack.enter_context(_common.patched(trainer, "_run_epoch", recorder.wrap("training", training_pass)))
    for name, category in (
        ("evaluate", "evaluation"),
        ("compute_metrics", "evaluation"),
        ("build_objectives", "prototypes"),
        ("diagnose", "diagnostics"),
        ("_split_tensors", "data_tensors"),
    ):
        stack.enter_context(_common.patched(trainer, name, recorder.wrap(category, getattr(trainer, name))))

    class _TimedCopy:
        deepcopy = staticmethod(recorder.wrap("state_copy", copy.deepcopy))

    stack.enter_context(_common.patched(trainer, "copy", _TimedCopy))

    for cls in (RDBStorage, _CachedStorage):
        for name in dir(cls):
            if name.startswith("_") or not callable(getattr(cls, name)):
                continue
            stack.enter_context(
                _common.patched(cls, name, recorder.wrap("storage", getattr(cls, name), outermost_of="optuna"))
            )
    for name in ("sample_relative", "sample_independent", "infer_relative_search_space", "before_trial", "after_trial"):
        sampler_cls = optuna.samplers.TPESampler
        stack.enter_context(
            _common.patched(sampler_cls, name, recorder.wrap("sampler", getattr(sampler_cls, name), outermost_of="optuna"))
        )
    stack.enter_context(
        _common.patched(
            NegativeCorrelationPruner, "prune",
            recorder.wrap("pruner", NegativeCorrelationPruner.prune, outermost_of="optuna"),
        )
    )


def measure_components(config, cache_dir: Path, repeats: int) -> list[dict]:
    """Time the set-up pieces of a trial alone; return one row per piece."""
    import numpy as np
    import torch

    from adapters import prepare, prototypes
    from adapters.metrics import compute_metrics
    from adapters.models import build_adapters
    from adapters.pipeline import prepare_context
    from adapters.source import load_or_train_source
    from adapters.trainer import evaluate

    context = prepare_context(config.source, config.target, config.source_model, cache_dir)
    rows = []

    def open_fresh() -> None:
        prepare._file_hashes.clear()
        prepare.prepare_dataset(config.source, cache_dir)
        prepare.prepare_dataset(config.target, cache_dir)

    rows.append({"component": "open prepared data, fresh process (hash + read)", "per": "process",
                 **_common.time_repeats(open_fresh, repeats=repeats).to_dict()})

    def load_only() -> None:
        prepare.load_prepared(context.source_data.path)
        prepare.load_prepared(context.target_data.path)

    rows.append({"component": "load_prepared, source + target", "per": "process",
                 **_common.time_repeats(load_only, repeats=repeats).to_dict()})

    features = {m: context.source_data.splits["train"].features[m] for m in context.modalities}
    samples = 2000
    for clusters in (16, 256):
        def fit(clusters=clusters) -> None:
            for modality in context.modalities:
                prototypes.fit_prototypes(features[modality], clusters, samples, seed=0)

        rows.append({"component": f"K-means cold, k={clusters}, 3 modalities", "per": "new cluster count",
                     **_common.time_repeats(fit, repeats=1 if clusters > 16 else max(1, repeats // 2), warmup=0).to_dict()})

    def fit_variant(n_init: int, dtype, threads: int | None, clusters: int = 256) -> None:
        # The library's row draw, then scikit-learn's default K-means (greedy k-means++ seeding) with
        # another start count, float type or BLAS/OpenMP thread cap.
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        rng = np.random.default_rng(0)
        with threadpool_limits(limits=threads):
            for modality in context.modalities:
                values = features[modality]
                rows_used = np.sort(rng.choice(len(values), size=min(samples, len(values)), replace=False))
                k = min(clusters, len(rows_used))
                KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(values[rows_used].astype(dtype))

    for n_init, dtype, threads in ((4, np.float64, 1), (1, np.float32, 1)):
        label = f"K-means cold, k=256, n_init={n_init}, {np.dtype(dtype).name}, greedy seeding, 1 thread (variant)"
        rows.append({"component": label, "per": "new cluster count",
                     **_common.time_repeats(lambda: fit_variant(n_init, dtype, threads), repeats=1, warmup=0).to_dict()})

    def lookup(clear_memory: bool) -> None:
        for modality in context.modalities:
            if clear_memory:
                prototypes.clear_memory_cache()
            prototypes.get_prototypes(
                features[modality], modality=modality, n_clusters=16, samples=samples, seed=0,
                fingerprint=context.source_data.fingerprint, cache_dir=cache_dir,
            )

    lookup(False)
    rows.append({"component": "prototypes cached, disk, 3 modalities", "per": "process",
                 **_common.time_repeats(lambda: lookup(True), repeats=repeats).to_dict()})
    rows.append({"component": "prototypes cached, memory, 3 modalities", "per": "trial",
                 **_common.time_repeats(lambda: lookup(False), repeats=repeats).to_dict()})

    rows.append({"component": "source model load (cached)", "per": "process",
                 **_common.time_repeats(
                     lambda: load_or_train_source(config.source_model, context.source_data, cache_dir, context.modalities),
                     repeats=repeats).to_dict()})

    adapters = build_adapters(context.target_data.widths, context.source_data.widths, context.modalities,
                              hidden=256, depth=2, dropout=0.1, norm="layer")
    valid = context.target_data.splits["valid"]
    eval_x = {m: torch.from_numpy(valid.features[m]) for m in context.modalities}
    labels = valid.labels.astype(np.float64)

    def evaluate_once() -> None:
        predictions, _ = evaluate(adapters, context.source_model, eval_x)
        compute_metrics(predictions, labels)

    rows.append({"component": f"evaluation, {len(valid)} valid rows", "per": "epoch",
                 **_common.time_repeats(evaluate_once, repeats=repeats * 5).to_dict()})
    for row in rows:
        row["median_ms"] = row["median_s"] * 1e3
        row["min_ms"] = row["min_s"] * 1e3
    return rows


def run_trials(config, studies_dir: Path, trials: int) -> tuple[list[dict], float, float]:
    """Run `trials` trials through `run_study`; return per-trial rows, set-up seconds and run seconds."""
    from contextlib import ExitStack

    from search.objective import Objective
    from search.study import run_study

    # Prepare data and source model once so that the trials see warm caches, as in a study
    # that has been run before; the in-process set-up of run_study is timed separately.
    Objective(config, studies_dir / "cache").context
    recorder = TrialRecorder()
    with ExitStack() as stack:
        _patch_everything(recorder, stack)
        started = time.perf_counter()
        summary = run_study(
            config, trials=trials, seed=0, storage=f"sqlite:///{studies_dir / 'bench.db'}",
            study_name="overhead", studies_dir=studies_dir,
        )
        recorder.finish_trial(recorder.last_end)
        total = time.perf_counter() - started
    setup = recorder.trials[0]["started"] - started if recorder.trials else total

    import optuna

    study = optuna.load_study(study_name="overhead", storage=f"sqlite:///{studies_dir / 'bench.db'}")
    stored = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = []
    for index, record in enumerate(recorder.trials):
        wall = record["ended"] - record["started"]
        frozen = stored[index] if index < len(stored) else None
        row = {
            "trial": index,
            "state": frozen.state.name.lower() if frozen else "?",
            "epochs": len(frozen.intermediate_values) if frozen else None,
            "n_clusters": frozen.params.get("n_clusters") if frozen else None,
            "objective": frozen.params.get("objective") if frozen else None,
            "wall_s": wall,
            "ask_to_first_step_s": None if record["first_step"] is None else record["first_step"] - record["started"],
        }
        counted = 0.0
        for category in CATEGORIES:
            row[f"{category}_s"] = record[category]
            counted += record[category]
        row["rest_s"] = wall - counted
        for category in (*CATEGORIES, "rest"):
            row[f"{category}_share"] = row[f"{category}_s"] / wall if wall > 0 else None
        row["non_training_share"] = 1.0 - row["training_share"] if wall > 0 else None
        rows.append(row)
    del summary
    return rows, setup, total


def _total_row(rows: list[dict]) -> dict:
    wall = sum(row["wall_s"] for row in rows)
    total = {"trial": "all", "state": "", "wall_s": wall, "epochs": sum(row["epochs"] or 0 for row in rows)}
    for category in (*CATEGORIES, "rest"):
        seconds = sum(row[f"{category}_s"] for row in rows)
        total[f"{category}_s"] = seconds
        total[f"{category}_share"] = seconds / wall if wall else None
    total["non_training_share"] = 1.0 - total["training_share"] if wall else None
    starts = [row["ask_to_first_step_s"] for row in rows if row["ask_to_first_step_s"] is not None]
    total["ask_to_first_step_s"] = _common.Timing(starts).median if starts else None
    return total


def run(args: argparse.Namespace) -> dict:
    from adapters import prototypes
    from search.config import StudyConfig

    _common.quiet_logs()
    threads = _common.benchmark_threads(args)
    trials = 1 if args.quick else args.trials
    with tempfile.TemporaryDirectory(prefix="adaptsearch-trial-overhead-") as folder:
        folder = Path(folder)
        world = _common.write_demo(folder / "world", args.quick)
        config = StudyConfig(
            source=world["source"], target=world["target"], space=_common.default_space(args.quick),
            source_model=_common.source_model_config(args.quick),
        )
        studies_dir = folder / "studies"
        components = measure_components(config, studies_dir / "cache", repeats=1 if args.quick else 5)
        # The trials reuse the prepared data and source model but fit their prototypes afresh,
        # as a new study does.
        shutil.rmtree(studies_dir / "cache" / "prototypes", ignore_errors=True)
        prototypes.clear_memory_cache()
        rows, setup_s, total_s = run_trials(config, studies_dir, trials)

    total = _total_row(rows)
    starts = [row["ask_to_first_step_s"] for row in rows if row["ask_to_first_step_s"] is not None]
    worst_start = max(starts) if starts else None
    goals = [
        _common.goal(
            f"non-training share of trial wall time <= {GOAL_OVERHEAD_SHARE:.0%}",
            f"<= {GOAL_OVERHEAD_SHARE}",
            total["non_training_share"],
            None if total["non_training_share"] is None else total["non_training_share"] <= GOAL_OVERHEAD_SHARE,
            "all trials together; evaluation per epoch counts as non-training",
        ),
        _common.goal(
            f"ask() to first training step <= {GOAL_START_S} s",
            f"<= {GOAL_START_S} s",
            worst_start,
            None if worst_start is None else worst_start <= GOAL_START_S,
            f"slowest trial; median {total['ask_to_first_step_s']:.3f} s" if starts else "no trial trained",
        ),
    ]
    columns = [
        ("trial", "trial", ""),
        ("state", "state", ""),
        ("epochs", "epochs", ""),
        ("n_clusters", "k", ""),
        ("wall_s", "wall s", ".2f"),
        ("training_share", "train", ".1%"),
        ("evaluation_share", "eval", ".1%"),
        ("prototypes_share", "protos", ".1%"),
        ("storage_share", "storage", ".1%"),
        ("sampler_share", "sampler", ".1%"),
        ("pruner_share", "pruner", ".1%"),
        ("state_copy_share", "copy", ".1%"),
        ("diagnostics_share", "diagn.", ".1%"),
        ("rest_share", "rest", ".1%"),
        ("ask_to_first_step_s", "ask->step s", ".3f"),
    ]
    component_columns = [("component", "component", ""), ("per", "paid once per", ""),
                         ("median_ms", "median ms", ".2f"), ("min_ms", "min ms", ".2f")]
    return _common.publish(
        NAME,
        args,
        title=f"trial wall time by part ({trials} trials, default space, SQLite, {threads} threads)",
        columns=columns,
        rows=[*rows, total],
        goals=goals,
        parameters={"threads": threads, "trials": trials, "storage": "sqlite", "space": "default (search/space.yaml)",
                    "sampler_seed": 0},
        extra={"components": components, "run_study_setup_s": setup_s, "run_study_total_s": total_s, "total": total},
        tables=[("trial set-up components, timed alone", component_columns, components)],
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=12, help="Trials to run and break down.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: all usable cores, 1 with --quick).")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the written result."""
    return run(_common.parse_args(NAME, __doc__.splitlines()[0], argv, _options))


if __name__ == "__main__":
    main()
