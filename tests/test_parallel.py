"""Several worker processes on one SQLite study: every requested trial finishes exactly once.

Both ways of running in parallel are covered: ``adaptsearch run --jobs 4`` (one command that
spawns its workers) and four separate ``adaptsearch run`` commands started at the same moment
on a new database, which also race to create the study, store its config and queue the
original settings.
"""

from __future__ import annotations

import subprocess
import time

from tests.reliability_support import cli_command, start_cli, trial_census, worker_env, write_quick_config

WORKERS = 4
TRIALS_PER_WORKER = 25
TOTAL = WORKERS * TRIALS_PER_WORKER


def check_study(storage: str, log_text: str) -> None:
    counts, trials = trial_census(storage)

    # Exactly the requested number of trials exist, and every one of them finished.
    assert counts["COMPLETE"] + counts["PRUNED"] == TOTAL, counts
    assert len(trials) == TOTAL, counts
    # Trial numbers are 0..N-1, each used once.
    assert sorted(trial.number for trial in trials) == list(range(TOTAL))
    # The original settings were queued and run once, although several processes opened the study.
    origins = [trial for trial in trials if trial.user_attrs.get("origin") == "original-settings"]
    assert len(origins) == 1, [trial.number for trial in origins]
    # No worker hit SQLite's lock timeout or any other failure.
    assert "database is locked" not in log_text
    assert "Traceback" not in log_text


def test_jobs_option_sqlite(tiny_world, tmp_path):
    config = write_quick_config(tmp_path, tiny_world)
    storage = f"sqlite:///{tmp_path / 'studies' / 'adaptsearch.db'}"
    started = time.monotonic()

    done = subprocess.run(
        cli_command("run", "--config", str(config), "--trials", str(TOTAL), "--jobs", str(WORKERS), "--seed", "0",
                    "--storage", storage, "--studies-dir", str(tmp_path / "studies")),
        cwd=tmp_path, env=worker_env(), capture_output=True, text=True, timeout=600,
    )

    log_text = done.stdout + done.stderr
    assert done.returncode == 0, log_text
    check_study(storage, log_text)
    print(f"{TOTAL} trials with --jobs {WORKERS}: {time.monotonic() - started:.1f} s")


def test_separate_processes_sqlite(tiny_world, tmp_path):
    config = write_quick_config(tmp_path, tiny_world)
    storage = f"sqlite:///{tmp_path / 'studies' / 'adaptsearch.db'}"
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    started = time.monotonic()

    # Each process requests the study's total, so the shared count stops them at TOTAL together.
    workers = [
        start_cli(
            ["run", "--config", str(config), "--trials", str(TOTAL), "--storage", storage,
             "--studies-dir", str(tmp_path / "studies"), "--heartbeat-interval", "2"],
            cwd=tmp_path, log=log,
        )
        for log in logs
    ]
    try:
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    log_text = "".join(log.read_text(errors="replace") for log in logs)
    assert codes == [0] * WORKERS, log_text
    check_study(storage, log_text)
    print(f"{TOTAL} trials in {WORKERS} separate processes: {time.monotonic() - started:.1f} s")
