"""Interrupting `adaptsearch run` mid-trial (SIGINT, SIGKILL) and rerunning reaches exactly N."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.study_support import TINY_SPACE, write_study_config

pytestmark = pytest.mark.slow

# Longer trials than the other tests, so that the signal lands inside a trial.
SLOW_SPACE = json.loads(json.dumps(TINY_SPACE))
SLOW_SPACE["parameters"]["epochs"] = {"fixed": 150}


def _command(config: Path, storage: str, studies_dir: Path) -> list[str]:
    return [
        str(Path(sys.executable).with_name("adaptsearch")), "run", "--config", str(config), "--trials", "3",
        "--storage", storage, "--studies-dir", str(studies_dir), "--seed", "0", "--heartbeat-interval", "1",
    ]


def _wait_for_running_trial(storage: str, process: subprocess.Popen, deadline: float) -> None:
    """Wait until a trial after trial 0 is RUNNING and has reported an epoch."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            trials = optuna.load_study(study_name="adaptsearch", storage=storage).trials
        except KeyError:
            trials = []
        if any(trial.number >= 1 and trial.state == TrialState.RUNNING and trial.intermediate_values for trial in trials):
            return
        time.sleep(0.1)
    raise AssertionError(f"no running trial to interrupt (process exit code {process.poll()})")


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupt_and_rerun(tiny_world, tmp_path, signal_number):
    config = write_study_config(tmp_path, tiny_world, space=SLOW_SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _command(config, storage, tmp_path / "studies")
    environment = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)}

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)
    _wait_for_running_trial(storage, process, time.monotonic() + 120)
    process.send_signal(signal_number)
    output = process.communicate(timeout=60)[0].decode()

    interrupted = optuna.load_study(study_name="adaptsearch", storage=storage).trials
    if signal_number == signal.SIGINT:
        # Ctrl-C ends the run with exit code 130 and leaves no trial RUNNING.
        assert process.returncode == 130, output
        assert all(trial.state != TrialState.RUNNING for trial in interrupted)
    else:
        # SIGKILL leaves the trial RUNNING until its heartbeat goes stale.
        assert any(trial.state == TrialState.RUNNING for trial in interrupted)

    rerun = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, check=False)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = optuna.load_study(study_name="adaptsearch", storage=storage).trials
    states = [trial.state for trial in trials]
    # After the rerun the study contains exactly 3 finished trials and nothing RUNNING or WAITING.
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 3
    assert TrialState.RUNNING not in states
    assert TrialState.WAITING not in states
    # The interrupted trial is FAIL, and its settings were run again by the rerun.
    failed = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert len(failed) == 1
    repeats = [trial for trial in trials if trial.params == failed[0].params and trial.number > failed[0].number]
    assert len(repeats) == 1
    assert repeats[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
