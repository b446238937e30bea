"""Adapter artifacts: store beside the database, top-K eviction, download, dashboard listing."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import torch
from report_support import build_study, wsgi_get

from adapters.errors import ConfigError, StudyError
from search.artifacts import (
    artifact_dir_for,
    artifact_store_for,
    download_adapters,
    load_adapters,
    prune_adapters,
    stored_adapters,
    upload_adapters,
)


def adapters_of(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    return {"visual": torch.nn.Linear(4, 3), "text": torch.nn.Linear(5, 3)}


@pytest.fixture
def setup(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = build_study(url, complete=4, pruned=1)
    return study, artifact_store_for(url), url


def test_artifact_dir_beside_sqlite(tmp_path):
    assert artifact_dir_for("sqlite:///studies/x.db") == Path("studies/x-artifacts")
    assert artifact_dir_for(f"sqlite:///{tmp_path}/a/b.db") == tmp_path / "a" / "b-artifacts"
    assert artifact_dir_for("postgresql://user@localhost/db") is None
    assert artifact_dir_for("postgresql://user@localhost/db", tmp_path / "art") == tmp_path / "art"
    assert artifact_dir_for("memory") is None


def test_store_needs_folder_for_server_storage():
    with pytest.raises(ConfigError, match="--artifacts DIR"):
        artifact_store_for("postgresql://user@localhost/db")


def test_store_folder_created(tmp_path):
    artifact_store_for(f"sqlite:///{tmp_path}/s.db")
    assert (tmp_path / "s-artifacts").is_dir()


def test_upload_download_round_trip(setup, tmp_path):
    study, store, _ = setup
    adapters = adapters_of(0)
    artifact_id = upload_adapters(study, 2, adapters, {"lr": 1e-3, "depth": 2}, store)
    assert artifact_id is not None

    path = download_adapters(study, 2, store, tmp_path)
    payload = load_adapters(path)
    assert path.name == "trial-2-adapters.pt"
    assert payload["trial"] == 2
    assert payload["value"] == pytest.approx(study.trials[2].value)
    assert payload["config"] == {"lr": 1e-3, "depth": 2}
    assert torch.equal(payload["state_dict"]["visual"]["weight"], adapters["visual"].weight.detach())


def test_keep_top_evicts(setup, tmp_path):
    study, store, url = setup
    folder = artifact_dir_for(url)
    # Values rise with the trial number, so uploading 0..3 with keep_top=2 keeps 2 and 3.
    for number in range(4):
        upload_adapters(study, number, adapters_of(number), {}, store, keep_top=2)
    assert sorted(stored_adapters(study)) == [2, 3]
    assert len(list(folder.iterdir())) == 2
    with pytest.raises(StudyError, match="trial 0 .* has no stored adapters"):
        download_adapters(study, 0, store, tmp_path)


def test_worse_trial_not_uploaded(setup):
    study, store, _ = setup
    upload_adapters(study, 3, adapters_of(3), {}, store, keep_top=1)
    assert upload_adapters(study, 1, adapters_of(1), {}, store, keep_top=1) is None
    assert sorted(stored_adapters(study)) == [3]


def test_prune_adapters_later(setup):
    study, store, _ = setup
    for number in range(4):
        upload_adapters(study, number, adapters_of(number), {}, store)
    assert prune_adapters(study, store, 1) == [0, 1, 2]
    assert sorted(stored_adapters(study)) == [3]


def test_pruned_trial_rejected(setup):
    study, store, _ = setup
    with pytest.raises(StudyError, match="PRUNED"):
        upload_adapters(study, 4, adapters_of(4), {}, store)


def test_live_trial_needs_value_for_keep_top(setup):
    study, store, _ = setup
    trial = study.ask()
    with pytest.raises(ConfigError, match="pass value="):
        upload_adapters(study, trial, adapters_of(5), {}, store, keep_top=2)
    # Inside the objective, before tell, the value is passed explicitly.
    assert upload_adapters(study, trial, adapters_of(5), {}, store, keep_top=2, value=0.99) is not None
    study.tell(trial, 0.99)
    assert trial.number in stored_adapters(study)


def test_dashboard_lists_and_serves(setup):
    study, store, _ = setup
    for number in range(4):
        upload_adapters(study, number, adapters_of(number), {}, store, keep_top=2)
    app = optuna_dashboard.wsgi(study._storage, artifact_store=store)

    status, raw = wsgi_get(app, f"/api/studies/{study._study_id}")
    assert status.startswith("200")
    listed = {trial["number"]: trial["artifacts"] for trial in json.loads(raw)["trials"]}
    # Evicted trials lose their listing; kept trials show one file each.
    assert listed[0] == []
    assert listed[1] == []
    assert [meta["filename"] for meta in listed[3]] == ["trial-3-adapters.pt"]

    meta = listed[3][0]
    trial_id = study.trials[3]._trial_id
    status, body = wsgi_get(app, f"/artifacts/{study._study_id}/{trial_id}/{meta['artifact_id']}")
    assert status.startswith("200")
    assert body[:2] == b"PK"  # torch.save writes a zip archive
