#!/usr/bin/env python
"""Kill search workers with SIGKILL at random moments and check that the study still ends right.

The script writes a tiny demo world and a study config whose trials take a fraction of a
second, starts ``--workers`` separate ``adaptsearch run`` processes on one storage, and
``--kills`` times kills a random live worker with SIGKILL and starts a replacement. Kills fall
at any moment of a worker's life: while it imports, prepares data or writes caches, and (for
about half of them, chosen at random) while the study has a trial RUNNING.

When every worker has exited, the study must hold exactly ``--trials`` finished (COMPLETE or
PRUNED) trials and no RUNNING trial, at most one FAIL trial per kill, and every cache file
must load. A killed worker's trial is failed by the heartbeat check of the surviving
workers, ``2 * --heartbeat`` seconds after its last heartbeat, and queued again.

Usage::

    python scripts/kill_search.py --kills 10 --trials 40 --workers 2
    python scripts/kill_search.py --storage postgresql+psycopg2://postgres@127.0.0.1:55432/adaptsearch

Exit status 0 means every check passed; 1 lists the failed checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Trials of a few epochs of a small adapter: each takes about half a second of one core.
QUICK_SPACE = {
    "parameters": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "n_clusters": {"type": "int", "low": 2, "high": 4},
        "hidden": {"fixed": 8},
        "batch_size": {"fixed": 64},
        "prototype_samples": {"fixed": 64},
    }
}
# The threshold rule is off (-1) so that the trial count does not depend on pruning.
NO_PRUNING = {"threshold": -1.0, "median_startup_trials": 1000}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="Number of SIGKILLs to send.")
    parser.add_argument("--trials", type=int, default=40, help="Finished trials the study must end with.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes alive at a time.")
    parser.add_argument("--epochs", type=int, default=3, help="Epochs per trial.")
    parser.add_argument("--heartbeat", type=int, default=1, help="Heartbeat interval of the workers in seconds.")
    parser.add_argument("--max-delay", type=float, default=4.0, help="Maximum wait between two kills, in seconds.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill moments and victims.")
    parser.add_argument("--storage", default=None, help="Storage URL; default: a new SQLite file in --folder.")
    parser.add_argument("--study", default="kill-search", help="Study name.")
    parser.add_argument("--folder", type=Path, default=None, help="Working folder; default: a new temporary one.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds the whole run may take.")
    return parser.parse_args(argv)


def write_config(folder: Path, epochs: int) -> Path:
    """Write a tiny demo world and a quick study config over it; return the config path."""
    import yaml

    from adapters.demo import write_demo_world

    world = write_demo_world(folder / "world", size="tiny", seed=0)
    space = json.loads(json.dumps(QUICK_SPACE))
    space["parameters"]["epochs"] = {"fixed": epochs}
    document = {
        "source": world["source"].to_dict(),
        "target": world["target"].to_dict(),
        "source_model": {"epochs": 2, "hidden": 8, "fusion_hidden": 8},
        "space": space,
        "pruner": NO_PRUNING,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


class Workers:
    """The live ``adaptsearch run`` processes, each logging to its own file."""

    def __init__(self, args: argparse.Namespace, config: Path, storage: str, folder: Path) -> None:
        self.command = [
            sys.executable, "-c", "from search.cli import main; main()",
            "run", "--config", str(config), "--trials", str(args.trials), "--study", args.study,
            "--storage", storage, "--studies-dir", str(folder / "studies"),
            "--heartbeat-interval", str(args.heartbeat),
        ]
        self.folder = folder
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), self.env.get("PYTHONPATH")]))
        self.live: list[subprocess.Popen] = []
        self.exit_codes: list[int] = []
        self.started = 0

    def start(self) -> subprocess.Popen:
        log = self.folder / f"worker-{self.started}.log"
        self.started += 1
        with open(log, "wb") as stream:
            process = subprocess.Popen(
                self.command, cwd=self.folder, env=self.env, stdout=stream, stderr=subprocess.STDOUT
            )
        self.live.append(process)
        return process

    def reap(self) -> None:
        """Forget workers that have exited and record their exit codes."""
        for process in list(self.live):
            if process.poll() is not None:
                self.exit_codes.append(process.returncode)
                self.live.remove(process)

    def stop_all(self) -> None:
        for process in self.live:
            process.kill()
            process.wait()
        self.reap()

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.folder.glob("worker-*.log")))


class StudyProbe:
    """Counts the RUNNING trials of the study; 0 until a worker has created it."""

    def __init__(self, storage: str, study_name: str) -> None:
        self.url = storage
        self.study_name = study_name
        self.study = None

    def running(self) -> int:
        import optuna
        from optuna.trial import TrialState
        from sqlalchemy.exc import SQLAlchemyError

        from search.storage import sqlite_path

        if self.study is None:
            path = sqlite_path(self.url)
            if path is not None and not path.is_file():
                return 0
            try:
                # Opening without creating tables, so that the probe never races the workers' set-up.
                storage = optuna.storages.RDBStorage(self.url, skip_table_creation=True)
                self.study = optuna.load_study(study_name=self.study_name, storage=storage)
            except (KeyError, SQLAlchemyError, optuna.exceptions.StorageInternalError):
                # No study yet, or a server database whose tables the workers have not created yet.
                return 0
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def kill_loop(args: argparse.Namespace, workers: Workers, storage: str, deadline: float) -> list[dict]:
    """Send `args.kills` SIGKILLs at random moments, keeping `args.workers` workers alive."""
    rng = random.Random(args.seed)
    probe = StudyProbe(storage, args.study)
    kills: list[dict] = []
    while len(kills) < args.kills and time.monotonic() < deadline:
        workers.reap()
        while len(workers.live) < args.workers:
            workers.start()
        mid_trial = rng.random() < 0.5
        wait_until = time.monotonic() + rng.uniform(0.2, args.max_delay)
        while time.monotonic() < wait_until or (mid_trial and probe.running() == 0):
            if time.monotonic() > deadline or not any(process.poll() is None for process in workers.live):
                break
            time.sleep(0.1)
        workers.reap()
        if not workers.live:
            # Every worker finished: the study reached its trial count before all kills were sent.
            break
        # The oldest worker is past its start-up and most likely inside a trial.
        victim = workers.live[0] if mid_trial else rng.choice(workers.live)
        running = probe.running()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills.append({"pid": victim.pid, "running_trials": running, "mid_trial": mid_trial})
        print(f"kill {len(kills)}: pid {victim.pid}, {running} trials RUNNING in the study", flush=True)
    return kills


def check_study(args: argparse.Namespace, storage: str, folder: Path, kills: list[dict]) -> list[str]:
    """Return the failed checks (empty when the study and caches are as required)."""
    import optuna

    from adapters.errors import DataError
    from adapters.prepare import load_prepared

    study = optuna.load_study(study_name=args.study, storage=storage)
    states = Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    print(f"trial states: {dict(states)}", flush=True)
    problems = []
    finished = states["COMPLETE"] + states["PRUNED"]
    if finished != args.trials:
        problems.append(f"{finished} finished trials, expected exactly {args.trials}")
    if states["RUNNING"]:
        problems.append(f"{states['RUNNING']} trials are still RUNNING")
    if states["FAIL"] > len(kills):
        problems.append(f"{states['FAIL']} FAIL trials after only {len(kills)} kills")
    for path in sorted((folder / "studies" / "cache").rglob("*.h5")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            load_prepared(path)
        except DataError as error:
            problems.append(f"cache file {path.name} does not load: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="kill-search-"))
    folder.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{folder / 'studies' / 'kill-search.db'}"
    config = write_config(folder, args.epochs)
    print(f"working folder {folder}, storage {storage}", flush=True)

    started = time.monotonic()
    deadline = started + args.timeout
    workers = Workers(args, config, storage, folder)
    try:
        kills = kill_loop(args, workers, storage, deadline)
        # The last workers finish the study, failing the killed workers' stale trials on the way.
        workers.reap()
        while len(workers.live) < args.workers:
            workers.start()
        for process in list(workers.live):
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        workers.reap()
    finally:
        workers.stop_all()

    problems = []
    if len(kills) < args.kills:
        problems.append(f"only {len(kills)} of {args.kills} kills were sent before the study finished; raise --trials")
    failed_exits = [code for code in workers.exit_codes if code not in (0, -signal.SIGKILL)]
    if failed_exits:
        problems.append(f"workers exited with codes {failed_exits}")
    if "Traceback" in workers.logs():
        problems.append("a worker log contains a traceback")
    problems += check_study(args, storage, folder, kills)
    mid_trial = sum(1 for kill in kills if kill["running_trials"])
    print(
        f"{len(kills)} kills ({mid_trial} with a trial RUNNING), {workers.started} workers started, "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    if not problems:
        print("all checks passed", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
