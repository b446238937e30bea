"""`adaptsearch data demo` and `adaptsearch data inspect` through Typer's CliRunner."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from adapters.errors import ConfigError, DataError
from adapters.prepare import prepare_dataset
from search.cli import app, main

runner = CliRunner()


@pytest.mark.filterwarnings("ignore:dataset demo-mosei has non-finite input values")
def test_demo_then_inspect(tmp_path):
    result = runner.invoke(app, ["data", "demo", str(tmp_path / "world"), "--size", "tiny", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "world" / "world.yaml").is_file()

    result = runner.invoke(
        app, ["data", "inspect", str(tmp_path / "world" / "world.yaml"), "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert "source: demo-mosei" in result.output
    assert "target: demo-mosi" in result.output
    assert "visual (713), audio (74), text (300)" in result.output
    assert "visual (65), audio (29), text (768)" in result.output
    assert "24/8/8" in result.output
    assert "label range" in result.output


def test_inspect_prepared_file(tiny_world, tmp_path):
    data = prepare_dataset(tiny_world["target"], tmp_path)
    result = runner.invoke(app, ["data", "inspect", str(data.path)])
    assert result.exit_code == 0, result.output
    assert "demo-mosi" in result.output
    assert "segments train/valid/test" in result.output


@pytest.mark.filterwarnings("ignore:dataset demo-mosei has non-finite input values")
def test_demo_with_segment_table(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(
        "video_id,segment,start,end,split,sentiment\n"
        "a,1,0,2,train,1.5\nb,1,0,3,valid,-1\nc,1,1,2,test,0.2\n"
    )
    result = runner.invoke(app, ["data", "demo", str(tmp_path / "w"), "--segments", str(table), "--size", "tiny"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["data", "inspect", str(tmp_path / "w" / "world.yaml"), "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert "1/1/1" in result.output


def test_inspect_missing_file_raises_config_error(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "nope.yaml")])
    assert isinstance(result.exception, ConfigError)


def test_inspect_broken_cache_raises_data_error(tmp_path):
    (tmp_path / "broken.h5").write_bytes(b"nope")
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "broken.h5")])
    assert isinstance(result.exception, DataError)


def test_demo_rejects_unknown_size(tmp_path):
    result = runner.invoke(app, ["data", "demo", str(tmp_path), "--size", "huge"])
    assert isinstance(result.exception, ConfigError)


def test_inspect_validates_study_config(tiny_world, tmp_path):
    world = tiny_world["source"].folder.parent / "world.yaml"
    config = tmp_path / "study.yaml"
    # A misspelt study key, which `run --config` rejects, must not pass inspection.
    config.write_text(world.read_text().replace("source:", "sorce_model: {}\nsource:", 1))

    result = runner.invoke(app, ["data", "inspect", str(config), "--cache-dir", str(tmp_path / "cache")])

    assert isinstance(result.exception, ConfigError)
    assert "study.yaml: study config: unknown key 'sorce_model'" in str(result.exception)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("debug", [False, True])
def test_debug_keeps_exit_code(tmp_path, capsys, debug):
    with pytest.raises(SystemExit) as exited:
        main([*(["--debug"] if debug else []), "data", "inspect", str(tmp_path / "nope.yaml")])

    assert exited.value.code == 2
    output = capsys.readouterr().err
    # --debug swaps the one red line for the traceback; the exit code stays.
    assert ("Traceback" in output) is debug
    assert ("error: dataset file" in output) is not debug


def test_bad_segment_table_leaves_no_folder(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("video_id,segment,start\na,1,0\n")

    result = runner.invoke(app, ["data", "demo", str(tmp_path / "w"), "--segments", str(table)])

    assert isinstance(result.exception, DataError)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["best"], ["train"]])
def test_help_shows_flags_without_value(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    # Only Typer's own rows (help, shell completion) may still show <bool>, because the
    # project's flags take no value.
    typer_rows = ("--help", "--install-completion", "--show-completion")
    flagged = [
        line for line in result.output.splitlines() if "<bool>" in line and not any(row in line for row in typer_rows)
    ]
    assert flagged == []
