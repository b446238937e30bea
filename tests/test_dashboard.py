"""`adaptsearch dashboard` serves the stored study over optuna-dashboard's HTTP API on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from adapters.errors import ConfigError, StudyError
from search.config import StudyConfig
from search.dashboard import serve_dashboard
from search.study import run_study
from tests.study_support import write_study_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stored_study(tiny_world, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("dashboard")
    config = StudyConfig.from_file(write_study_config(folder, tiny_world))
    storage = f"sqlite:///{folder / 'study.db'}"
    run_study(config, trials=2, storage=storage, studies_dir=folder, study_name="watched", seed=0)
    return storage


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str, server: subprocess.Popen, deadline: float):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)


def test_dashboard_serves_study(stored_study):
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("adaptsearch")), "dashboard", "--storage", stored_study, "--study", "watched",
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        studies = _get_json(f"{base}/api/studies", server, time.monotonic() + 60)
        study_id = studies["study_summaries"][0]["study_id"]
        detail = _get_json(f"{base}/api/studies/{study_id}", server, time.monotonic() + 30)
        trial = detail["trials"][1]
        artifact = trial["artifacts"][0]
        with urllib.request.urlopen(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}", timeout=10) as response:
            downloaded = response.read()
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0].decode()

    # The dashboard lists the study that adaptsearch wrote, under its name.
    names = [study["study_name"] for study in studies["study_summaries"]]
    assert names == ["watched"], output
    # The run's notes come back through the API: the study's and each finished trial's.
    study_note = detail["note"]["body"]
    for heading in ("### Baseline: the original script's settings", "### Data", "### Study config"):
        assert heading in study_note
    assert trial["note"]["body"].startswith("## Trial 1")
    assert "| Pearson r |" in trial["note"]["body"]
    # The trial's stored adapters are listed, and the server returns the saved file.
    assert artifact["filename"].endswith(".pt")
    assert len(downloaded) > 0
    assert downloaded[:2] == b"PK"  # torch.save writes a zip archive


def test_dashboard_missing_study(stored_study):
    # A study name that the storage lacks is rejected before the server starts.
    with pytest.raises(StudyError, match="'other' not found"):
        serve_dashboard(stored_study, study_name="other", port=_free_port())


def test_dashboard_port_in_use(stored_study):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        # A port already in use is a clear error naming the port.
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            serve_dashboard(stored_study, port=port)
