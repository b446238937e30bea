"""Study report: figures, self-contained HTML, Pareto front, too few trials, the command."""

from __future__ import annotations

import re

import optuna
import pytest
import typer
from report_support import build_study
from typer.testing import CliRunner

from adapters.errors import StudyError
from search.commands.report import register
from search.report import build_report

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tmp_path_factory.mktemp("single")
    url = f"sqlite:///{folder / 'r.db'}"
    study = build_study(url, complete=6, pruned=2)
    return study, url, build_report(study, folder / "report")


def test_report_writes_figures(single):
    _, _, report = single
    names = [path.name for path in report.figures]
    assert names == [
        "importances.png",
        "history.png",
        "curves.png",
        "slice-depth.png",
        "slice-lr.png",
        "slice-objective.png",
        "alignment.png",
    ]
    for path in report.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_embeds_every_figure(single):
    _, _, report = single
    page = report.html_path.read_text()
    images = IMG.findall(page)
    # One embedded image per PNG file, and no link to a file outside the page.
    assert len(images) == len(report.figures)
    assert "src=\"http" not in page and ".png\"" not in page
    assert "<td>5 ★</td>" in page
    assert "0 (original settings)" in page


def test_single_objective_best(single):
    study, _, report = single
    assert [summary.number for summary in report.best] == [study.best_trial.number]
    assert report.baseline.number == 0
    assert report.baseline.baseline
    assert set(report.importances) == {"lr", "depth", "objective"}
    assert report.counts["pruned"] == 2


def test_multi_objective_shows_pareto(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = build_study(f"sqlite:///{tmp_path / 'm.db'}", complete=3, pruned=1, directions=("maximize", "minimize"))
    report = build_report(study, tmp_path / "out")
    front = {trial.number for trial in study.best_trials}
    assert {summary.number for summary in report.best} == front
    assert "pareto.png" in [path.name for path in report.figures]
    assert "Pareto front and best trials" in report.html_path.read_text()


def test_too_few_trials_message(tmp_path):
    study = build_study(f"sqlite:///{tmp_path / 'f.db'}", complete=2, pruned=1)
    report = build_report(study, tmp_path / "out")
    assert report.importances is None
    assert any("at least 4 complete trials, the study has 2" in message for message in report.messages)
    assert "importances.png" not in [path.name for path in report.figures]
    assert len(IMG.findall(report.html_path.read_text())) == len(report.figures)


def test_only_pruned_trials(tmp_path):
    study = build_study(f"sqlite:///{tmp_path / 'p.db'}", complete=0, pruned=2)
    report = build_report(study, tmp_path / "out")
    assert report.best == []
    assert "curves.png" in [path.name for path in report.figures]
    assert any("no trial completed yet" in message for message in report.messages)


def test_empty_study_raises(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty")
    with pytest.raises(StudyError, match="no finished trial"):
        build_report(study, tmp_path / "out")


def test_report_command(single, tmp_path):
    _, url, _ = single
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """Keep `report` as a named subcommand."""

    result = CliRunner().invoke(
        app, ["report", "--study", "hand", "--storage", url, "--out", str(tmp_path / "cli")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "best trial" in result.output
    assert "0 (original)" in result.output
    assert (tmp_path / "cli" / "report.html").is_file()
