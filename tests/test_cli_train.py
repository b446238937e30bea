import json

import pytest
import torch
from typer.testing import CliRunner

from adapters.params import RunParams, SourceModelConfig, TrainConfig, dump_params
from search.cli import app

runner = CliRunner()


@pytest.fixture
def params_file(tiny_world, tmp_path):
    torch.set_num_threads(1)
    params = RunParams(
        tiny_world["source"],
        tiny_world["target"],
        SourceModelConfig(hidden=16, fusion_hidden=16, epochs=5, patience=2),
        TrainConfig(epochs=2, n_clusters=4, hidden=16, objective="moments", labelled_fraction=0.2),
        {"study": "demo", "trial": 3},
    )
    return dump_params(params, tmp_path / "params.yaml")


def test_train_command_prints_table_beside_original(params_file, tmp_path):
    result = runner.invoke(app, ["train", "--params", str(params_file), "--studies", str(tmp_path / "studies"), "--out", str(tmp_path / "run")])

    assert result.exit_code == 0, result.output
    assert "Pearson r" in result.output
    assert "original settings" in result.output
    assert "run folder" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["original"]["config"]["objective"] == "prototype-mse"
    assert metrics["original"]["config"]["epochs"] == 50
    assert metrics["tuned"]["config"]["objective"] == "moments"


def test_train_command_without_original(params_file, tmp_path):
    result = runner.invoke(
        app, ["train", "--params", str(params_file), "--studies", str(tmp_path / "s"), "--no-compare-original", "--include-valid"]
    )

    assert result.exit_code == 0, result.output
    assert "original settings" not in result.output
    assert "valid r (last epoch, trained on)" in result.output
    assert len(list((tmp_path / "s" / "runs").iterdir())) == 1


def test_train_command_bad_params(params_file, capsys):
    import yaml

    mapping = yaml.safe_load(params_file.read_text())
    mapping["train"]["lr"] = -1
    params_file.write_text(yaml.safe_dump(mapping))

    from search.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--params", str(params_file)])

    # One line naming the key, the allowed range and the value; exit code of a config error.
    assert exit_info.value.code == 2
    assert "train.lr must be a number in (0.0, 1.0], got -1.0" in capsys.readouterr().err


def test_train_command_missing_file(tmp_path, capsys):
    from search.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--params", str(tmp_path / "nope.yaml")])

    assert exit_info.value.code == 2
    assert "not found" in capsys.readouterr().err
