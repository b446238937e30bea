import logging

import numpy as np
import pytest

from adapters.diagnostics import diagnose
from synthetic_train import make_pair


@pytest.fixture(scope="module")
def pair():
    return make_pair()


def _adapted(source, scale=1.0):
    return {m: source.splits["valid"].features[m][:20] * scale for m in source.modalities}


def test_collapse_flagged_and_logged(pair, caplog):
    source, target = pair
    labels = target.splits["valid"].labels
    predictions = np.full(labels.shape, 0.2) + np.linspace(0, 0.01, labels.size)

    with caplog.at_level(logging.WARNING, logger="adapters.diagnostics"):
        report = diagnose(_adapted(source, 0.01), predictions, labels, source, target, split="valid")

    assert report["collapsed"] is True
    assert any("collapsed" in message for message in caplog.messages)
    # Adapted features at 1 % of the source spread are flagged per modality.
    assert any("adapted text features collapsed" in warning for warning in report["warnings"])


def test_logged_warnings_name_the_run(pair, caplog):
    source, target = pair
    labels = target.splits["valid"].labels
    predictions = np.full(labels.shape, 0.2)

    with caplog.at_level(logging.WARNING, logger="adapters.diagnostics"):
        report = diagnose(_adapted(source, 0.01), predictions, labels, source, target, split="test", label="original settings")

    # Each logged warning starts with the run's name; the stored sentences do not.
    assert caplog.messages
    assert all(message.startswith("original settings: ") for message in caplog.messages)
    assert [message.removeprefix("original settings: ") for message in caplog.messages] == report["warnings"]


def test_healthy_run_has_no_warnings(pair):
    source, target = pair
    labels = target.splits["valid"].labels

    report = diagnose(_adapted(source), labels * 0.9 + 0.05, labels, source, target, split="valid")

    assert report["collapsed"] is False
    assert report["warnings"] == []
    assert report["sign_agreement"] == 1.0
    assert report["nonfinite_share"] == {"visual": 0.0, "audio": 0.0, "text": 0.0}
    # The synthetic reports carry no counts, so those read as None.
    assert report["nonfinite"]["source"]["text"] == {"share": 0.0, "values": None, "replaced_cells": None}


def test_sign_confusion_reported(pair):
    source, target = pair
    labels = target.splits["valid"].labels

    report = diagnose(_adapted(source), -labels, labels, source, target, split="test")

    assert report["sign_agreement"] == 0.0
    assert any("signs agree" in warning for warning in report["warnings"])
    assert report["split"] == "test"


def test_report_is_json_able(pair):
    import json

    source, target = pair
    labels = target.splits["valid"].labels
    report = diagnose(_adapted(source), labels, labels, source, target, split="valid")

    assert json.loads(json.dumps(report)) == report
    assert set(report["features"]["audio"]) == {"adapted", "source"}
    assert set(report["predictions"]) == {"mean", "std", "min", "max"}
