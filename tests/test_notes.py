"""Dashboard notes of finished trials and of the study, read back through optuna-dashboard."""

from __future__ import annotations

import json

import optuna
import optuna_dashboard
import pytest
from report_support import build_study, wsgi_get

from adapters.errors import StudyError
from search.notes import lr_schedule, read_trial_note, write_study_note, write_trial_note


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return build_study(f"sqlite:///{tmp_path / 'notes.db'}", complete=3, pruned=1)


def test_trial_note_by_number(study):
    body = write_trial_note(study, 1, epochs=20)
    # The note is stored for a trial that is already COMPLETE, and get_note reads it back.
    assert study.trials[1].state == optuna.trial.TrialState.COMPLETE
    assert read_trial_note(study, 1) == body
    assert "| Pearson r | +0.1254 |" in body
    assert "| MAE | 1.2100 |" in body
    assert "Acc-7" in body
    assert "F1 (negative / positive, zero labels dropped)" in body


def test_trial_note_diagnostics_and_schedule(study):
    body = write_trial_note(study, study.trials[1])
    # Trial 1 was built with collapsed predictions and adapted features.
    assert "**predictions collapsed**" in body
    assert "**adapted features collapsed:** visual, audio, text" in body
    assert "| visual | +0.1000 | +0.0000 | +0.0100 | +1.0000 |" in body
    assert "epochs 1-6: 0.000178 → epochs 7-10: 0.000124" in body
    assert "Sign agreement with non-zero labels: 64.0 %" in body


def test_pruned_trial_note_gives_reason(study):
    pruned = study.trials[3]
    body = write_trial_note(study, pruned, epochs=20)
    assert "PRUNED" in body
    assert "stopped after epoch** 3 of 20" in body
    assert "threshold rule: valid correlation -0.1200 at epoch 3 is below the threshold" in body
    # The pruner settings come from the study's adaptsearch attribute.
    assert "warmup_epochs=3" in body


def test_original_settings_trial_marked(study):
    body = write_trial_note(study, 0)
    assert body.startswith("## Trial 0 (original script's settings)")


def test_rewrite_replaces_note(study):
    write_trial_note(study, 2)
    long_body = write_trial_note(study, 2, epochs=99)
    # A second save replaces the first one rather than appending to it.
    assert read_trial_note(study, 2) == long_body


def test_unknown_trial_number_raises(study):
    with pytest.raises(StudyError, match="has no trial 40"):
        write_trial_note(study, 40)


def test_lr_schedule_runs():
    history = [{"epoch": 1, "lr": 5e-4}, {"epoch": 2, "lr": 5e-4}, {"epoch": 3, "lr": 3.5e-4}]
    assert lr_schedule(history) == "epochs 1-2: 0.0005 → epochs 3: 0.00035"
    assert lr_schedule([]) == ""


def test_study_note_contents(study):
    body = write_study_note(study, {"pruner": {"threshold": 0.0}}, {"target": {"segments": {"valid": 229}}})
    assert optuna_dashboard.get_note(study) == body
    # The baseline is found by its origin attribute: trial 0.
    assert "Trial 0 · COMPLETE" in body
    assert "| target.segments.valid | 229 |" in body
    assert "threshold: 0.0" in body


def test_notes_served_by_dashboard_api(study):
    trial_body = write_trial_note(study, 3)
    study_body = write_study_note(study, None, None)
    app = optuna_dashboard.wsgi(study._storage)

    status, raw = wsgi_get(app, f"/api/studies/{study._study_id}")
    assert status.startswith("200"), raw[:200]
    detail = json.loads(raw)
    assert detail["note"]["body"] == study_body
    notes = {trial["number"]: trial["note"]["body"] for trial in detail["trials"]}
    assert notes[3] == trial_body
    assert notes[1] == ""
