"""Study report: figures, self-contained HTML, Pareto front, too few trials, the command."""

from __future__ import annotations

import base64
import re

import optuna
import pytest
import typer
from matplotlib.backends.backend_agg import FigureCanvasAgg
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from report_support import build_study
from typer.testing import CliRunner

from adapters.errors import StudyError
from search.commands.report import register
from search.report import _history_figure, _slice_figure, build_report

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


def test_html_signs_only_correlations(single):
    study, _, report = single
    page = report.html_path.read_text()
    # MAE (1.21) and MSE (2.05) are errors, never negative, so they carry no sign.
    assert "<td>1.2100</td>" in page
    assert "<td>2.0500</td>" in page
    assert "+1.2100" not in page
    assert "+2.0500" not in page
    # The correlation keeps its sign, as the objective and as the metric "Pearson r".
    assert page.count(f"<td>{study.best_trial.values[0]:+.4f}</td>") == 2


def test_single_objective_best(single):
    study, _, report = single
    assert [summary.number for summary in report.best] == [study.best_trial.number]
    assert report.baseline.number == 0
    assert report.baseline.baseline
    assert set(report.importances) == {"lr", "depth", "objective"}
    assert report.counts["pruned"] == 2
    assert report.pruned_by_rule == {"threshold": 2}
    assert "2 pruned (2 by the threshold rule)" in report.html_path.read_text()


def test_multi_objective_shows_pareto(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = build_study(f"sqlite:///{tmp_path / 'm.db'}", complete=3, pruned=1, directions=("maximize", "minimize"))
    report = build_report(study, tmp_path / "out")
    front = {trial.number for trial in study.best_trials}
    assert {summary.number for summary in report.best} == front
    assert "pareto.png" in [path.name for path in report.figures]
    assert "Pareto front and best trials" in report.html_path.read_text()


def test_multi_objective_mae_unsigned(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = build_study(f"sqlite:///{tmp_path / 'm.db'}", complete=3, pruned=0, directions=("maximize", "minimize"))
    page = build_report(study, tmp_path / "out").html_path.read_text()
    for trial in study.trials:
        correlation, mae = trial.values
        # The MAE objective column has no sign, but the correlation column has one.
        assert f"<td>{mae:.4f}</td>" in page
        assert f"+{mae:.4f}" not in page
        assert f"<td>{correlation:+.4f}</td>" in page


def test_categorical_slice_points_on_ticks(single):
    study, _, _ = single
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    choices = list(complete[0].distributions["objective"].choices)
    axes = _slice_figure(study, complete, "objective").axes[0]
    collections = {collection.get_label(): collection for collection in axes.collections}

    points = collections["complete trial"].get_offsets()
    star = collections["trial 0: original settings"].get_offsets()
    # Every point, trial 0's star included, sits exactly on the tick of its choice.
    assert [x for x, _ in points] == [choices.index(trial.params["objective"]) for trial in complete]
    assert star[0][0] == choices.index(complete[0].params["objective"])
    assert star[0][1] == complete[0].values[0]


@pytest.mark.parametrize(("low", "high"), [(1.5e-4, 1.2e-3), (1.2e-4, 9e-4), (3e-4, 5e-4), (2e-5, 8e-4), (1e-5, 1e-2)])
def test_log_slice_tick_labels_apart(low, high):
    study = optuna.create_study(direction="maximize")
    for index in range(5):
        lr = low * (high / low) ** (index / 4)
        study.add_trial(
            create_trial(params={"lr": lr}, distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)}, values=[0.1 * index])
        )
    figure = _slice_figure(study, study.trials, "lr")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = figure.axes[0]
    frame = axes.get_window_extent(renderer)

    # Matplotlib also lays out labels of ticks just outside the axis, which it does not draw.
    boxes = []
    for label in axes.get_xticklabels(minor=False) + axes.get_xticklabels(minor=True):
        box = label.get_window_extent(renderer)
        centre = (box.x0 + box.x1) / 2
        if label.get_visible() and label.get_text() and frame.x0 - 1 <= centre <= frame.x1 + 1:
            boxes.append(box)
    boxes.sort(key=lambda box: box.x0)
    # The axis shows at least two labels, and each ends before the next one starts.
    assert len(boxes) >= 2
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, (low, high, left, right)


def test_categorical_slice_shows_unsampled_choices():
    study = optuna.create_study(direction="maximize")
    distribution = CategoricalDistribution([64, 128, 256, 512])
    for index, hidden in enumerate((128, 128, 256)):
        study.add_trial(create_trial(params={"hidden": hidden}, distributions={"hidden": distribution}, values=[0.1 * index]))

    axes = _slice_figure(study, study.trials, "hidden").axes[0]

    # 64 and 512 were never sampled, and their ticks still lie inside the axis.
    low, high = axes.get_xlim()
    assert low < 0
    assert high > 3
    assert [label.get_text() for label in axes.get_xticklabels()] == ["64", "128", "256", "512"]


def test_integer_log_slice_plain_labels():
    study = optuna.create_study(direction="maximize")
    for index, clusters in enumerate((11, 16, 40, 75)):
        study.add_trial(
            create_trial(
                params={"n_clusters": clusters},
                distributions={"n_clusters": IntDistribution(4, 256, log=True)},
                values=[0.1 * index],
            )
        )
    figure = _slice_figure(study, study.trials, "n_clusters")
    FigureCanvasAgg(figure).draw()

    labels = [label.get_text() for label in figure.axes[0].get_xticklabels() if label.get_text()]
    # A cluster count reads as a whole number, never in scientific notation.
    assert labels
    assert all(label.isdigit() for label in labels), labels


def test_history_ticks_are_whole_trials():
    study = optuna.create_study(direction="maximize")
    for index in range(4):
        study.add_trial(
            create_trial(params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)}, values=[0.1 * index])
        )
    axes = _history_figure(study, study.trials).axes[0]

    ticks = axes.xaxis.get_major_locator()()
    assert all(float(tick).is_integer() for tick in ticks)


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


def test_terminal_tables_fit_80_columns(single, tmp_path):
    from rich.console import Console

    from search.commands.report import _settings_tables, _summary_table

    study, _, _ = single
    result = build_report(study, tmp_path / "out", top=7)
    console = Console(width=80, record=True)
    console.print(_summary_table(result))
    for table in _settings_tables(result):
        console.print(table)
    text = console.export_text()

    assert max(len(line) for line in text.splitlines()) <= 80
    # Every parameter name is shown whole, and every shown trial has a settings column.
    for name in study.best_trial.params:
        assert f" {name} " in text, name
    assert "0 (original)" in text


@pytest.mark.slow
def test_report_of_real_search(tiny_world, tmp_path):
    from search.config import StudyConfig
    from search.study import run_study
    from tests.study_support import write_study_config

    # Pruning on, so the correlation-curve figure has pruned trials to draw.
    pruner = {"threshold": 0.0, "warmup_epochs": 2, "median_startup_trials": 5, "median_warmup_epochs": 2}
    config = StudyConfig.from_file(write_study_config(tmp_path / "cfg", tiny_world, pruner=pruner))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_study(config, trials=30, storage=url, studies_dir=tmp_path / "studies", seed=0, threads=1)
    study = optuna.load_study(study_name="adaptsearch", storage=url)

    report = build_report(study, tmp_path / "report")

    names = {path.name for path in report.figures}
    assert {"importances.png", "history.png", "curves.png", "alignment.png"} <= names
    assert {f"slice-{name}.png" for name in ("lr", "objective")} <= names
    for path in report.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.html_path.read_text()
    # The page embeds exactly the bytes of every PNG file, each under a caption naming it,
    # and links nothing outside itself.
    embedded = sorted(base64.b64decode(data) for data in IMG.findall(page))
    assert embedded == sorted(path.read_bytes() for path in report.figures)
    for path in report.figures:
        assert f"({path.name})" in page
    assert "src=\"http" not in page and ".png\"" not in page
    assert report.counts["complete"] + report.counts["pruned"] == 30
    assert report.baseline is not None and report.baseline.number == 0
