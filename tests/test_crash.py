"""Crash safety: SIGKILLed workers and Ctrl-C leave a study that resumes to the exact trial count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest

from tests.reliability_support import REPO, cli_command, start_cli, trial_census, wait_for_running_trial, worker_env, write_quick_config


def test_kill_workers_script(tmp_path):
    # Three SIGKILLs at random moments, one worker replaced after each; the script checks the
    # study (exact finished count, nothing RUNNING, at most one FAIL per kill) and the caches.
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kill_search.py"), "--kills", "3", "--trials", "24",
         "--workers", "2", "--epochs", "40", "--max-delay", "3", "--folder", str(tmp_path), "--timeout", "300"],
        cwd=REPO, env=worker_env(), capture_output=True, text=True, timeout=360,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_leaves_no_running_trial(tiny_world, tmp_path, jobs):
    # Trials of many seconds (3000 epochs), so that the interrupt lands inside one. With 40
    # epochs a trial seen RUNNING could end before the signal arrived.
    config = write_quick_config(tmp_path, tiny_world, epochs=3000)
    storage = f"sqlite:///{tmp_path / 'studies' / 'adaptsearch.db'}"
    args = ["run", "--config", str(config), "--trials", "50", "--storage", storage,
            "--studies-dir", str(tmp_path / "studies"), "--jobs", str(jobs)]
    process = start_cli(args, cwd=tmp_path, log=tmp_path / "run.log")
    try:
        wait_for_running_trial(storage, process)
        # A terminal's Ctrl-C sends SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = (tmp_path / "run.log").read_text(errors="replace")

    counts, trials = trial_census(storage)
    # No trial is left RUNNING, and the interrupted ones are FAIL.
    assert counts["RUNNING"] == 0, counts
    assert counts["FAIL"] >= 1, counts
    # Each interrupted trial's settings are queued to run again.
    failed = [trial.number for trial in trials if trial.state.name == "FAIL"]
    retries = [trial.user_attrs.get("retry_of") for trial in trials if trial.state.name == "WAITING"]
    assert sorted(retries) == sorted(failed), (failed, retries)
    # The command reports the interruption with exit code 130 and no traceback.
    assert code == 130, output
    assert "run the same command again" in output
    assert "Traceback" not in output, output


def test_trial_without_heartbeat_failed_and_rerun(tiny_world, tmp_path):
    config = write_quick_config(tmp_path, tiny_world)
    storage = f"sqlite:///{tmp_path / 'studies' / 'adaptsearch.db'}"

    def run(trials: int) -> subprocess.CompletedProcess:
        args = ["run", "--config", str(config), "--trials", str(trials), "--storage", storage,
                "--studies-dir", str(tmp_path / "studies"), "--heartbeat-interval", "1"]
        return subprocess.run(cli_command(*args), cwd=tmp_path, env=worker_env(), capture_output=True, text=True,
                              timeout=180)

    first = run(1)
    assert first.returncode == 0, first.stdout + first.stderr
    # A worker that died between creating its trial and recording the trial's first heartbeat
    # leaves a RUNNING trial that Optuna's stale-trial rule never looks at.
    orphan = optuna.load_study(study_name="adaptsearch", storage=storage).ask()

    second = run(2)

    assert second.returncode == 0, second.stdout + second.stderr
    counts, trials = trial_census(storage)
    assert counts == {"COMPLETE": 2, "FAIL": 1}, counts
    assert trials[orphan.number].state.name == "FAIL"
    assert f"trial {orphan.number} has been RUNNING" in second.stdout + second.stderr


def test_lost_interrupt_raised_at_check(monkeypatch):
    from search.study import _DeferredInterrupt

    class RaisesSignalWhenCollected:
        def __del__(self):
            # The handler runs here, and Python drops an exception raised in __del__.
            signal.raise_signal(signal.SIGINT)

    class FailsWhenCollected:
        def __del__(self):
            raise ValueError("an unrelated error in a finalizer")

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    interrupts = _DeferredInterrupt()
    interrupts.install()
    try:
        RaisesSignalWhenCollected()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        # The interrupt is raised once.
        interrupts.check()
        FailsWhenCollected()
    finally:
        interrupts.restore()

    # The dropped KeyboardInterrupt is not reported; other dropped errors still are.
    assert [type(entry.exc_value) for entry in reported] == [ValueError]
