"""Running a study that lasts: resume, a shared trial count, parallel workers, clean Ctrl-C.

``run_study(trials=N)`` brings the study to N finished trials in total, where finished means
COMPLETE or PRUNED. FAIL trials (an interrupted trial, a worker that died) do not count, so a
rerun of an interrupted search runs exactly the remainder, and workers started with
``jobs > 1`` share the same count. Before each new trial a worker counts the finished trials
and the trials other workers are running. It starts a trial only while both together stay
below N. While only running trials stand between the study and N, it waits. The count and
the start of the trial happen under the study's `StartLock`, so that two workers (also
separate ``adaptsearch run`` processes) never both take the last slot.

The study stores its config, its search space and the fingerprints of the prepared data as
study user attributes. Resuming on other data, with another space, other fixed settings or
another source model raises `StudyError`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from adapters.errors import ConfigError, StudyError
from adapters.params import ORIGINAL_SETTINGS
from search import __version__
from search.config import StudyConfig
from search.objective import METRIC_NAME, ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN, Objective, jsonable
from search.pruner import PRUNED_REASON_ATTR, PRUNED_RULE_ATTR, count_pruned_by_rule
from search.storage import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_STORAGE_URL,
    StartLock,
    check_url,
    fail_trials_without_heartbeat,
    open_start_lock,
    open_storage,
    record_first_heartbeat,
)
from search.space import ensure_space_file, load_space
from search.subsets import encode_settings
from search.artifacts import artifact_dir_for, artifact_store_for
from search.notes import write_study_note, write_trial_note

logger = logging.getLogger(__name__)

DEFAULT_STUDY_NAME = "adaptsearch"
# Adapters of this many best complete trials are kept in the artifact store.
DEFAULT_KEEP_ADAPTERS = 10
STUDY_ATTR = "adaptsearch"
RETRY_OF_ATTR = "retry_of"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# Seconds between checks while a worker waits for trials of other workers to end.
_WAIT_POLL_S = 1.0
# Seconds that interrupted workers get to mark their trial FAIL before they are terminated.
_WORKER_STOP_GRACE_S = 30.0


@dataclass
class TrialCounts:
    """Trial numbers by state."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> TrialCounts:
        counts = cls()
        for trial in trials:
            if trial.state == TrialState.COMPLETE:
                counts.complete += 1
            elif trial.state == TrialState.PRUNED:
                counts.pruned += 1
            elif trial.state == TrialState.FAIL:
                counts.failed += 1
            elif trial.state == TrialState.RUNNING:
                counts.running += 1
            elif trial.state == TrialState.WAITING:
                counts.waiting += 1
        return counts


@dataclass
class RunSummary:
    """Outcome of `run_study`."""

    study_name: str
    storage: str
    target_trials: int
    counts: TrialCounts
    wall_seconds: float
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    baseline_number: int | None = None
    baseline_value: float | None = None
    baseline_state: str | None = None
    interrupted: bool = False
    new_trials: int = 0
    pruned_by_rule: dict[str, int] = field(default_factory=dict)


class Reporter:
    """Receives progress events; the base class ignores them (used when nothing is shown)."""

    def start(self, study_name: str, target_trials: int, counts: TrialCounts, best: float | None) -> None:
        pass

    def trial_started(self, number: int, epochs: int) -> None:
        pass

    def epoch(self, number: int, epoch: int, epochs: int, score: float) -> None:
        pass

    def update(self, counts: TrialCounts, best: float | None, running: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """Settings of one `run_study` call that workers need too (picklable for spawn)."""

    study_name: str
    storage: str
    trials: int
    timeout: float | None
    seed: int | None
    studies_dir: Path
    heartbeat_interval: int | None
    grace_period: int | None
    artifacts_dir: Path | None = None
    keep_adapters: int | None = None


def resolve_config(
    config_path: str | Path | None, studies_dir: str | Path, *, space_path: str | Path | None = None
) -> StudyConfig:
    """Load the study config at `config_path`, or build the demo study config when it is None.

    The default space is ``studies_dir/space.yaml`` (written from the packaged default when
    missing). The demo config uses the embedded demo world under ``studies_dir/demo-world``.
    """
    studies_dir = Path(studies_dir)
    if config_path is not None:
        default_space = ensure_space_file(studies_dir) if space_path is None else None
        return StudyConfig.from_file(config_path, space_path=space_path, default_space=default_space)

    from adapters.demo import ensure_demo_world

    datasets = ensure_demo_world(studies_dir)
    space = load_space(space_path if space_path is not None else ensure_space_file(studies_dir))
    return StudyConfig(source=datasets["source"], target=datasets["target"], space=space)


def run_study(
    config: StudyConfig,
    *,
    trials: int = 100,
    timeout: float | None = None,
    study_name: str = DEFAULT_STUDY_NAME,
    storage: str = DEFAULT_STORAGE_URL,
    seed: int | None = None,
    jobs: int = 1,
    studies_dir: str | Path = "studies",
    reporter: Reporter | None = None,
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL_S,
    grace_period: int | None = None,
    threads: int | None = None,
    artifacts_dir: str | Path | None = None,
    keep_adapters: int | None = DEFAULT_KEEP_ADAPTERS,
) -> RunSummary:
    """Run or resume a study until it contains `trials` finished (COMPLETE or PRUNED) trials.

    Parameters
    ----------
    config : StudyConfig
    trials : int
        Total finished trials the study should hold, counting earlier runs.
    timeout : float or None
        Seconds after which no new trial starts; a running trial is finished.
    study_name, storage : str
        Study name and database URL (SQLite files are created with their folder).
    seed : int or None
        Sampler seed; each worker and each resumed run derives its own seed from it.
    jobs : int
        Worker processes; with 1, trials run in this process.
    threads : int or None
        Torch threads per worker. None leaves this process's setting alone when ``jobs == 1``
        and gives each of several workers ``cpu_count // jobs``.
    studies_dir : path
        Folder of caches (``studies_dir/cache``) and the demo world.
    reporter : Reporter or None
        Progress display; None shows nothing.
    heartbeat_interval, grace_period : int or None
        Seconds between heartbeats of a running trial, and since the last heartbeat after
        which a trial counts as stale (its worker died); it is then failed and queued again.
    artifacts_dir : path or None
        Artifact folder for the adapters of complete trials. None: ``<db>-artifacts`` beside
        a SQLite file, ``studies_dir/artifacts`` for other storages (pass a folder that all
        machines share when workers run on several machines).
    keep_adapters : int or None
        Store the adapters of this many best complete trials; 0 stores none, None all.

    Raises
    ------
    StudyError
        If the stored study was created with other data, another space or other settings.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
    if keep_adapters is not None and (isinstance(keep_adapters, bool) or not isinstance(keep_adapters, int) or keep_adapters < 0):
        raise ConfigError(f"keep_adapters must be an integer >= 0, got {keep_adapters!r}")
    # A bad URL, an unusable SQLite folder, a corrupt database file or an unreachable server
    # fails here, before minutes of data preparation. No lock file or artifact folder is made
    # beside a database that cannot be opened.
    check_url(storage)
    open_storage(storage, create=True, heartbeat_interval=None)
    start_lock = open_start_lock(storage, study_name)
    reporter = reporter or Reporter()
    options = RunOptions(
        study_name=study_name,
        storage=storage,
        trials=trials,
        timeout=timeout,
        seed=seed,
        studies_dir=Path(studies_dir),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        artifacts_dir=_artifacts_dir(storage, artifacts_dir, Path(studies_dir)) if keep_adapters != 0 else None,
        keep_adapters=keep_adapters,
    )
    started = time.monotonic()
    if jobs == 1 and threads is not None:
        import torch

        torch.set_num_threads(threads)

    # The data and the source model are prepared here once; workers then load them from the cache.
    objective = _make_objective(config, options, on_epoch=_epoch_hook(reporter))
    fingerprints = objective.fingerprints()
    # Under the lock, so that processes started together on a new study store its attributes
    # and queue the original settings once.
    with start_lock:
        study = _open_study(options, config, worker=0)
        check_or_store_study_attrs(study, config, fingerprints)
        enqueue_original_settings(study, config)
    data_summary = {"source": objective.context.source_data.report, "target": objective.context.target_data.report}
    write_study_note(study, config.to_dict(), data_summary)

    counts = TrialCounts.of(study.get_trials(deepcopy=False))
    reporter.start(study_name, trials, counts, _best_value(study))
    interrupted = False
    try:
        if jobs == 1:
            interrupted = _work(
                study, objective, options, reporter, deadline=_deadline(options, started), start_lock=start_lock
            )
        else:
            interrupted = _run_workers(study, options, jobs, threads, reporter, deadline=_deadline(options, started))
        # Optuna runs no trial callback for a trial that Ctrl-C ended, so the progress line
        # gets the counts here, once that trial is FAIL, to agree with the closing table.
        reporter.update(TrialCounts.of(study.get_trials(deepcopy=False)), _best_value(study))
    finally:
        reporter.close()

    # Written again so that the note shows the finished original-settings trial.
    write_study_note(study, config.to_dict(), data_summary)
    summary = summarize(study, options, time.monotonic() - started, initial_finished=counts.finished)
    summary.interrupted = interrupted
    return summary


def _artifacts_dir(storage: str, override: str | Path | None, studies_dir: Path) -> Path:
    folder = artifact_dir_for(storage, override)
    return folder if folder is not None else studies_dir / "artifacts"


def _make_objective(config: StudyConfig, options: RunOptions, *, on_epoch=None) -> Objective:
    store = None
    if options.artifacts_dir is not None:
        store = artifact_store_for(options.storage, options.artifacts_dir)
    return Objective(
        config,
        options.studies_dir / "cache",
        on_epoch=on_epoch,
        artifact_store=store,
        keep_adapters=options.keep_adapters,
    )


def _deadline(options: RunOptions, started: float) -> float | None:
    return None if options.timeout is None else started + options.timeout


def _open_study(options: RunOptions, config: StudyConfig, *, worker: int) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    storage = open_storage(
        options.storage,
        create=True,
        heartbeat_interval=options.heartbeat_interval,
        grace_period=options.grace_period,
        stale_trial_callback=callback,
    )
    existing = options.study_name in optuna.get_all_study_names(storage)
    study = optuna.create_study(
        storage=storage,
        study_name=options.study_name,
        directions=config.directions,
        load_if_exists=True,
        pruner=config.study_pruner(),
    )
    config.check_directions(study)
    if not existing and worker == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.objectives))
    # A fixed seed would replay the same random start-up draws after a resume and in every
    # worker, so the seed is offset by the worker index and by the trials already stored.
    sampler_seed = None
    if options.seed is not None:
        sampler_seed = options.seed + 1_000_003 * worker + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    return study


def check_or_store_study_attrs(study: optuna.Study, config: StudyConfig, fingerprints: dict[str, str]) -> None:
    """Store config and data fingerprints in a new study, or check them against a stored one.

    Raises
    ------
    StudyError
        If the study contains trials and was created by something else, or with other data,
        another search space, other fixed settings or another source model.
    """
    stored = study.user_attrs.get(STUDY_ATTR)
    current = {
        "config": jsonable(config.to_dict()),
        "train_base": jsonable(config.base_train_config().to_dict()),
        "fingerprints": dict(fingerprints),
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise StudyError(
                f"study {study.study_name!r} contains trials but was not created by adaptsearch; "
                "pass --study NEW to start a new study"
            )
        study.set_user_attr(STUDY_ATTR, current)
        return

    name = study.study_name
    for role in ("source", "target"):
        old, new = stored["fingerprints"].get(role), fingerprints[role]
        if old != new:
            raise StudyError(
                f"study {name!r} was run on other {role} data (fingerprint {old} stored, {new} now); "
                f"pass --study NEW to start a new study on this data, or restore the data the study used"
            )
    old_space = stored["config"]["space"]["parameters"]
    new_space = current["config"]["space"]["parameters"]
    if old_space != new_space:
        changed = sorted(key for key in set(old_space) | set(new_space) if old_space.get(key) != new_space.get(key))
        raise StudyError(
            f"study {name!r} was run with another search space (differs in {', '.join(changed)}); "
            "pass --study NEW to search the new space, or restore the space file the study used"
        )
    if stored["train_base"] != current["train_base"]:
        changed = sorted(
            key
            for key in set(stored["train_base"]) | set(current["train_base"])
            if stored["train_base"].get(key) != current["train_base"].get(key)
        )
        raise StudyError(
            f"study {name!r} was run with other fixed settings (differs in {', '.join(changed)}); "
            "pass --study NEW to start a new study with these settings"
        )
    if stored["config"]["source_model"] != current["config"]["source_model"]:
        raise StudyError(
            f"study {name!r} was run with another source model config; "
            "pass --study NEW to start a new study with this source model"
        )
    if stored["config"]["pruner"] != current["config"]["pruner"]:
        logger.warning(
            "study %r was started with pruner settings %s; the remaining trials use %s",
            name,
            stored["config"]["pruner"],
            current["config"]["pruner"],
        )
    counts = TrialCounts.of(study.get_trials(deepcopy=False))
    logger.info(
        "resuming study %r: %d finished, %d failed, %d waiting to run",
        name, counts.finished, counts.failed, counts.waiting,
    )


def enqueue_original_settings(study: optuna.Study, config: StudyConfig) -> None:
    """Queue the original script's settings as the study's first trial, once.

    Only the space's open parameters are enqueued; fixed values come from the config. A value
    outside the space is left to the sampler, with a warning.
    """
    # The space samples a modality subset as a "visual+audio+text" string, not as a list.
    inside, outside = config.space.restrict(encode_settings(ORIGINAL_SETTINGS.to_dict()))
    if outside:
        warnings.warn(
            f"the original settings {outside} lie outside the search space; trial 0 samples them instead",
            RuntimeWarning,
            stacklevel=2,
        )
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN:
            return
    study.enqueue_trial(inside, user_attrs={ORIGIN_ATTR: ORIGINAL_SETTINGS_ORIGIN}, skip_if_exists=True)


def _work(
    study: optuna.Study,
    objective: Objective,
    options: RunOptions,
    reporter: Reporter,
    *,
    deadline: float | None,
    start_lock: StartLock,
    current_trial=None,
    stop=None,
) -> bool:
    """Run trials one at a time until the study contains enough finished trials; True if interrupted.

    `current_trial` is a shared ``multiprocessing.Value`` that receives the id of each trial
    as it starts, so that the parent of a worker can fail the trial if it has to end the worker.
    A set `stop` event (``multiprocessing.Event``) ends the loop like a Ctrl-C.
    """
    callbacks = [_progress_callback(reporter)]
    interrupts = _DeferredInterrupt()
    progress_hook = objective.on_epoch

    def on_epoch(number: int, record, epochs: int) -> None:
        if progress_hook is not None:
            progress_hook(number, record, epochs)
        interrupts.check()
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt

    def run_trial(trial: optuna.Trial) -> float:
        # The trial is RUNNING now and counts for every other worker. With its first heartbeat
        # stored before the lock is released, a trial that other workers see RUNNING without
        # one belongs to a worker that died.
        record_first_heartbeat(study, trial._trial_id)
        start_lock.release()
        objective.current_trial_id = trial._trial_id
        if current_trial is not None:
            current_trial.value = trial._trial_id
        try:
            # A Ctrl-C that came while Optuna started the trial is raised here, where Optuna
            # marks the trial FAIL and stops its heartbeat thread.
            interrupts.allow()
            return objective(trial)
        finally:
            interrupts.defer()

    interrupts.install()
    objective.on_epoch = on_epoch
    try:
        while True:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if deadline is not None and time.monotonic() >= deadline:
                logger.info("timeout reached; no new trial is started")
                return False
            interrupts.defer()
            with start_lock:
                _fail_stale_trials(study)
                fail_trials_without_heartbeat(study)
                counts = TrialCounts.of(study.get_trials(deepcopy=False))
                if counts.finished >= options.trials:
                    return False
                if counts.finished + counts.running < options.trials:
                    objective.current_trial_id = None
                    # Optuna's ask creates the trial (or starts a queued one) before it calls
                    # run_trial, which releases the lock.
                    study.optimize(run_trial, n_trials=1, callbacks=callbacks, catch=())
                    interrupts.allow()
                    continue
            interrupts.allow()
            # Trials of other workers, or of a worker that died and is not yet stale, may still
            # end as FAIL and leave a slot to fill.
            time.sleep(_WAIT_POLL_S)
    except KeyboardInterrupt:
        # The handler ignores further SIGINTs (a terminal's Ctrl-C reaches --jobs workers
        # directly and again through their parent), so the clean-up runs to its end.
        start_lock.release()
        _close_interrupted_trial(study, objective.current_trial_id)
        return True
    finally:
        interrupts.restore()
        objective.on_epoch = progress_hook


class _DeferredInterrupt:
    """SIGINT handler of `_work` that raises KeyboardInterrupt only where a trial can be closed.

    While Optuna creates a trial, starts its heartbeat thread or stores the result, a
    KeyboardInterrupt would leave the trial RUNNING, and a heartbeat thread that was started
    but not stopped keeps the process from exiting. In those steps (between `defer` and
    `allow`) the handler only records the signal, and `allow` raises it. `check` raises a
    recorded SIGINT whose KeyboardInterrupt was lost. After the first SIGINT the handler
    ignores further ones until `restore`. Outside the main thread, where
    Python allows no signal handler, nothing is installed and Ctrl-C acts as before.
    """

    def __init__(self) -> None:
        self._deferring = False
        self._pending = False
        self._previous = None
        self._previous_unraisable_hook = sys.unraisablehook
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._previous_unraisable_hook = sys.unraisablehook
            sys.unraisablehook = self._report_unraisable
            self._installed = True

    def restore(self) -> None:
        if self._installed:
            # getsignal gives None for a handler that was not set from Python.
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)
            sys.unraisablehook = self._previous_unraisable_hook
            self._installed = False

    def _report_unraisable(self, unraisable) -> None:
        # A KeyboardInterrupt that Python dropped came from `_handle`, which recorded it for
        # `check`. Printing its traceback would only alarm the user.
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self._pending:
            return
        self._previous_unraisable_hook(unraisable)

    def defer(self) -> None:
        self._deferring = True

    def allow(self) -> None:
        self._deferring = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a SIGINT came and its exception was lost.

        Python prints and drops an exception raised in a weakref callback or a ``__del__``
        method, so the handler's KeyboardInterrupt is lost when the signal lands in one (a
        garbage collection inside SQLAlchemy did this). The trial loop calls `check` after
        every epoch.
        """
        if self._pending and not self._deferring:
            self._pending = False
            raise KeyboardInterrupt

    def _handle(self, signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._pending = True
        if self._deferring:
            return
        raise KeyboardInterrupt


def _close_interrupted_trial(study: optuna.Study, trial_id: int | None) -> None:
    """Fail the trial a Ctrl-C interrupted, if still RUNNING, and queue its settings again."""
    if trial_id is None:
        return
    trial = study._storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING:
        # Optuna fails a trial interrupted inside the objective itself. This branch covers a
        # Ctrl-C that arrived inside study.ask or study.tell.
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as error:
            # The trial ended between the read and the tell, failed by this process's Optuna
            # or by another worker. Its state is read again below.
            logger.debug("trial %d ended before it could be failed here: %s", trial.number, error)
        trial = study._storage.get_trial(trial_id)
    if trial.state != TrialState.FAIL or _has_retry(study, trial):
        return
    attrs = {RETRY_OF_ATTR: trial.number}
    if ORIGIN_ATTR in trial.user_attrs:
        attrs[ORIGIN_ATTR] = trial.user_attrs[ORIGIN_ATTR]
    study.enqueue_trial(trial.params, user_attrs=attrs)
    logger.warning("trial %d was interrupted and marked FAIL; a rerun repeats its settings", trial.number)


def _has_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """True if a trial repeating `trial` is already queued or run, by this module or by Optuna.

    Optuna's stale-trial callback lists the failed trial numbers in the copy's system
    attribute ``retry_history``.
    """
    for other in study.get_trials(deepcopy=False):
        if other.number <= trial.number:
            continue
        if other.user_attrs.get(RETRY_OF_ATTR) == trial.number or trial.number in other.system_attrs.get("retry_history", ()):
            return True
    return False


def _fail_stale_trials(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _progress_callback(reporter: Reporter) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        reporter.update(TrialCounts.of(trials), _best_value(study, trials))
        write_trial_note(study, trial.number)
        reason = trial.user_attrs.get(PRUNED_REASON_ATTR)
        if trial.state == TrialState.PRUNED and reason:
            rule = trial.user_attrs.get(PRUNED_RULE_ATTR, "unknown")
            logger.info("trial %d pruned by the %s rule: %s", trial.number, rule, reason)
            return
        # The first value is the correlation, also in a multi-objective study.
        value = trial.values[0] if trial.values else float("nan")
        logger.info("trial %d %s: %s %.4f", trial.number, trial.state.name.lower(), METRIC_NAME, value)

    return callback


def _epoch_hook(reporter: Reporter):
    def hook(number: int, record, epochs: int) -> None:
        if record.epoch == 1:
            reporter.trial_started(number, epochs)
        reporter.epoch(number, record.epoch, epochs, record.metrics.score)

    return hook


def _best_value(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> float | None:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trials is None else trials
    values = [trial.values[0] for trial in trials if trial.state == TrialState.COMPLETE and trial.values]
    return max(values) if values else None


def summarize(study: optuna.Study, options: RunOptions, wall_seconds: float, *, initial_finished: int = 0) -> RunSummary:
    """Collect counts, the best trial and the original-settings trial of `study`."""
    trials = study.get_trials(deepcopy=False)
    counts = TrialCounts.of(trials)
    summary = RunSummary(
        study_name=study.study_name,
        storage=options.storage,
        target_trials=options.trials,
        counts=counts,
        wall_seconds=wall_seconds,
        new_trials=counts.finished - initial_finished,
        pruned_by_rule=count_pruned_by_rule(trials),
    )
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if complete:
        # The best correlation; in a multi-objective study that is one end of the Pareto front.
        best = max(complete, key=lambda trial: trial.values[0])
        summary.best_number, summary.best_value, summary.best_params = best.number, best.values[0], dict(best.params)
    baselines = [trial for trial in trials if trial.user_attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN]
    finished = [trial for trial in baselines if trial.state in FINISHED_STATES]
    if finished or baselines:
        baseline = (finished or baselines)[0]
        summary.baseline_number = baseline.number
        summary.baseline_value = baseline.values[0] if baseline.values else None
        summary.baseline_state = baseline.state.name
    return summary


# --- parallel workers ---------------------------------------------------------------------


def _run_workers(
    study: optuna.Study, options: RunOptions, jobs: int, threads: int | None, reporter: Reporter, *, deadline: float | None
) -> bool:
    """Start `jobs` worker processes and show their progress by polling the storage."""
    if options.storage == "memory":
        raise ConfigError("jobs > 1 needs a database storage that worker processes share; pass --storage sqlite:///...")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    worker_options = dataclasses.replace(options, timeout=remaining)
    context = multiprocessing.get_context("spawn")
    config_dict = study.user_attrs[STUDY_ATTR]["config"]
    # The id of the trial each worker runs (-1: none yet), for failing it if the worker is ended.
    current_trials = [context.Value("q", -1, lock=False) for _ in range(jobs)]
    # Set on Ctrl-C: a worker that ignored the SIGINT while it started stops before its next trial.
    stop = context.Event()
    processes = [
        context.Process(
            target=_worker_main,
            args=(config_dict, worker_options, index, threads, current_trials[index - 1], stop),
            name=f"adaptsearch-worker-{index}",
        )
        for index in range(1, jobs + 1)
    ]

    interrupted = False
    try:
        _start_with_sigint_ignored(processes)
        logger.info("started %d worker processes with %d torch threads each", jobs, threads)
        while any(process.is_alive() for process in processes):
            trials = study.get_trials(deepcopy=False)
            counts = TrialCounts.of(trials)
            reporter.update(counts, _best_value(study, trials), running=counts.running)
            time.sleep(_WAIT_POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        _stop_workers(study, processes, current_trials)
    for process in processes:
        process.join()
    failed = [process.name for process in processes if process.exitcode not in (0, _INTERRUPTED_EXIT)]
    if failed and not interrupted:
        raise StudyError(f"worker processes {', '.join(failed)} failed; see their log lines above, fix the cause and rerun")
    return interrupted or any(process.exitcode == _INTERRUPTED_EXIT for process in processes)


def _start_with_sigint_ignored(processes: list) -> None:
    """Start `processes` with SIGINT ignored, so that each starts ignoring it too.

    A spawned worker imports torch and Optuna before `_worker_main` runs, and a Ctrl-C in that
    time would end it with a traceback. An ignored signal stays ignored across exec, and Python
    then installs no KeyboardInterrupt handler. `_worker_main` installs its own, and checks the
    stop event for a Ctrl-C that it missed. Blocking the signal instead is not enough, because
    threads of native libraries in the worker may unblock it.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(study: optuna.Study, processes: list, current_trials: list) -> None:
    """Interrupt the workers, wait for them, and end any that do not stop in time.

    A terminal's Ctrl-C reaches the workers already, since they share this process group. The
    SIGINT sent here reaches them when this process alone was interrupted, and a worker ignores
    a second one. A worker still alive after `_WORKER_STOP_GRACE_S` is terminated, and the trial
    it was running is marked FAIL and queued again here.
    """
    logger.warning("interrupted; asking the workers to finish their current trial as FAIL")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        stop_by = time.monotonic() + _WORKER_STOP_GRACE_S
        for process, current in zip(processes, current_trials):
            process.join(timeout=max(0.0, stop_by - time.monotonic()))
            if not process.is_alive():
                continue
            logger.warning("worker %s did not stop within %.0f s; terminating it", process.name, _WORKER_STOP_GRACE_S)
            process.terminate()
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()
                process.join()
            if current.value >= 0 and study._storage.get_trial(current.value).state == TrialState.RUNNING:
                _close_interrupted_trial(study, current.value)
    finally:
        signal.signal(signal.SIGINT, previous)


_INTERRUPTED_EXIT = 130


def _interrupt_once(signum, frame) -> None:
    """SIGINT handler of a worker: raise KeyboardInterrupt once, then ignore further SIGINTs.

    A terminal's Ctrl-C and the parent's forwarded SIGINT both reach a worker. The second one
    must not interrupt Optuna while it stores the interrupted trial as FAIL.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker_main(
    config_dict: dict, options: RunOptions, index: int, threads: int, current_trial=None, stop=None
) -> None:
    """Entry point of a worker process: load the study and run trials until the count is reached.

    A Ctrl-C at any point ends the worker with exit code 130 and no traceback. `stop` is the
    parent's ``multiprocessing.Event``, set when the parent was interrupted.
    """
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        interrupted = _prepare_and_work(config_dict, options, index, threads, current_trial, stop)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        raise SystemExit(_INTERRUPTED_EXIT)


def _prepare_and_work(config_dict: dict, options: RunOptions, index: int, threads: int, current_trial, stop) -> bool:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format=f"[worker {index}] %(levelname)s %(message)s")
    # Optuna logs every failed trial with its traceback at WARNING, also one that Ctrl-C ended;
    # an error that stops a worker is printed when it leaves the process anyway.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    config = StudyConfig.from_dict(config_dict, base_dir="/")
    objective = _make_objective(config, options)
    # The data and source model are loaded before the first trial, so that the trial is not
    # RUNNING while the worker is still reading caches.
    objective.context  # noqa: B018 - the property loads and keeps the context
    start_lock = open_start_lock(options.storage, options.study_name)
    study = _open_study(options, config, worker=index)
    started = time.monotonic()
    return _work(
        study,
        objective,
        options,
        Reporter(),
        deadline=_deadline(options, started),
        start_lock=start_lock,
        current_trial=current_trial,
        stop=stop,
    )
