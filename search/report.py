"""A study report: PNG figures and one self-contained HTML page.

`build_report` reads a study and writes, into one folder:

- ``importances.png``: parameter importances (fANOVA, seed 0) when enough trials completed,
- ``history.png``: the objective per trial with the running best, trial 0 marked,
- ``curves.png``: per-epoch MOSI-valid correlation of every trial, complete against pruned,
- ``slice-<parameter>.png``: the objective against each parameter,
- ``alignment.png``: the per-modality alignment loss per epoch of the best trial,
- ``pareto.png`` for a two-objective study (maximise correlation, minimise MAE),
- ``report.html``: every figure embedded as a base64 data URI, plus a metrics table.

A single-objective report shows the best trial; a multi-objective report shows the Pareto
front (``study.best_trials``) instead. The library returns the facts as a `Report`; the
command prints them.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from adapters.errors import ConfigError, StudyError
from adapters.io import atomic_write_bytes, atomic_write_text
from search.notes import METRIC_ROWS, find_baseline
from search.objective import METRIC_NAME, ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN
from search.pruner import count_pruned_by_rule

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "Report", "TrialSummary", "build_report"]

logger = logging.getLogger(__name__)

# fANOVA needs a few complete trials with differing parameters before its ranking means anything.
MIN_TRIALS_FOR_IMPORTANCE = 4
_DPI = 110
_COMPLETE_COLOR = "tab:blue"
_PRUNED_COLOR = "tab:red"
_BASELINE_COLOR = "black"
_BEST_COLOR = "tab:green"
# Keys of METRIC_ROWS whose values the HTML table writes with a sign, because correlations
# can be negative while errors such as MAE and MSE cannot.
_SIGNED_METRICS = frozenset({"corr"})


@dataclass(frozen=True)
class TrialSummary:
    """One row of the report's metrics table."""

    number: int
    state: str
    values: tuple[float, ...] | None
    best_epoch: int | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    baseline: bool


@dataclass
class Report:
    """Summary of a written report: files, trial counts, best trials, importances, notes."""

    study_name: str
    directions: tuple[str, ...]
    out_dir: Path
    html_path: Path
    figures: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    pruned_by_rule: dict[str, int] = field(default_factory=dict)
    best: list[TrialSummary] = field(default_factory=list)
    baseline: TrialSummary | None = None
    importances: dict[str, float] | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def describe_counts(self) -> str:
        """Return the trial counts by state, with the pruned ones split by rule: "16 complete, 14 pruned (...)"."""
        parts = []
        for state, count in self.counts.items():
            if not count:
                continue
            text = f"{count} {state}"
            if state == "pruned" and self.pruned_by_rule:
                rules = ", ".join(f"{number} by the {rule} rule" for rule, number in sorted(self.pruned_by_rule.items()))
                text += f" ({rules})"
            parts.append(text)
        return ", ".join(parts)


def build_report(study: optuna.Study, out_dir: str | Path, *, top: int = 10) -> Report:
    """Write the figures and the HTML page of `study` into `out_dir` and return a summary.

    Parameters
    ----------
    study : optuna.Study
    out_dir : path
        Created if missing; files of an earlier report there are replaced.
    top : int
        Number of best COMPLETE trials in the metrics table (besides the baseline and, for a
        multi-objective study, the whole Pareto front).

    Raises
    ------
    StudyError
        If the study contains no finished (COMPLETE or PRUNED) trial.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be an integer >= 1, got {top!r}")
    trials = study.get_trials(deepcopy=False)
    finished = [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not finished:
        raise StudyError(f"study {study.study_name!r} has no finished trial yet; run 'adaptsearch run' first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    directions = tuple(direction.name.lower() for direction in study.directions)
    report = Report(study_name=study.study_name, directions=directions, out_dir=out_dir, html_path=out_dir / "report.html")
    report.counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in TrialState}
    report.pruned_by_rule = count_pruned_by_rule(trials)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best_trials = _best_trials(study, complete)
    report.best = [_summary(trial) for trial in best_trials]
    baseline = find_baseline(study)
    report.baseline = _summary(baseline) if baseline is not None else None

    figures: list[tuple[str, Figure, str]] = []
    importance_figure = _importance_figure(study, complete, report)
    if importance_figure is not None:
        figures.append(("importances.png", importance_figure, "Parameter importances"))
    figures.append(("history.png", _history_figure(study, trials), "Optimisation history"))
    if len(directions) > 1:
        figures.append(("pareto.png", _pareto_figure(study, complete, best_trials), "Pareto front"))
    curves = _curves_figure(trials, best_trials)
    if curves is not None:
        figures.append(("curves.png", curves, "Per-epoch MOSI-valid correlation"))
    else:
        report.messages.append("no trial reported per-epoch values, so there is no learning-curve figure")
    for name in _parameter_names(finished):
        figures.append((f"slice-{_file_stem(name)}.png", _slice_figure(study, complete, name), f"Slice: {name}"))
    if best_trials:
        alignment = _alignment_figure(best_trials[0])
        if alignment is not None:
            figures.append(("alignment.png", alignment, f"Alignment losses of trial {best_trials[0].number}"))
        else:
            report.messages.append(f"trial {best_trials[0].number} stored no per-epoch losses, so there is no alignment-loss figure")
    else:
        report.messages.append("no trial completed yet, so there is no best trial")

    images = []
    for filename, figure, caption in figures:
        data = _png_bytes(figure)
        path = out_dir / filename
        atomic_write_bytes(path, data)
        report.figures.append(path)
        images.append((caption, filename, data))

    table_trials = _table_trials(study, complete, best_trials, baseline, top)
    atomic_write_text(report.html_path, _render_html(study, report, images, table_trials))
    logger.debug("wrote %d figures and %s", len(report.figures), report.html_path)
    return report


# --- selection ------------------------------------------------------------------------------


def _best_trials(study: optuna.Study, complete: list[FrozenTrial]) -> list[FrozenTrial]:
    """Return the best trial (single objective) or the Pareto front sorted by the first objective."""
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda trial: _ordered(study, trial.values[0], 0))


def _ordered(study: optuna.Study, value: float | None, index: int) -> float:
    """Return a sort key that puts the better value of objective `index` first."""
    if value is None or not math.isfinite(value):
        return math.inf
    return -value if study.directions[index] == StudyDirection.MAXIMIZE else value


def _table_trials(study, complete, best_trials, baseline, top) -> list[FrozenTrial]:
    ranked = sorted(complete, key=lambda trial: (_ordered(study, trial.values[0], 0), trial.number))[:top]
    chosen: dict[int, FrozenTrial] = {}
    for trial in [*best_trials, *ranked]:
        chosen.setdefault(trial.number, trial)
    if baseline is not None:
        chosen.setdefault(baseline.number, baseline)
    return sorted(chosen.values(), key=lambda trial: (_ordered(study, trial.values[0] if trial.values else None, 0), trial.number))


def _summary(trial: FrozenTrial) -> TrialSummary:
    return TrialSummary(
        number=trial.number,
        state=trial.state.name,
        values=tuple(trial.values) if trial.values else None,
        best_epoch=trial.user_attrs.get("best_epoch"),
        metrics=dict(trial.user_attrs.get("metrics") or {}),
        params=dict(trial.params),
        baseline=_is_baseline(trial),
    )


def _is_baseline(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN


def _parameter_names(trials: Sequence[FrozenTrial]) -> list[str]:
    return sorted({name for trial in trials for name in trial.params})


def _file_stem(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in name)


def _objective_label(study: optuna.Study, index: int = 0) -> str:
    names = study.metric_names
    if names and index < len(names) and names[index]:
        return names[index]
    # Without stored metric names, a two-objective study is taken to be (correlation, MAE),
    # the multi-objective set-up adaptsearch supports.
    if index == 0:
        return f"{METRIC_NAME} (MOSI valid)"
    if index == 1 and len(study.directions) == 2:
        return "MAE (MOSI valid)"
    return f"objective {index}"


# --- figures --------------------------------------------------------------------------------


def _importance_figure(study: optuna.Study, complete: list[FrozenTrial], report: Report) -> Figure | None:
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        report.messages.append(
            f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials, "
            f"the study has {len(complete)}; run more trials"
        )
        return None
    label = _objective_label(study)
    try:
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target=(lambda trial: trial.values[0]) if len(study.directions) > 1 else None,
        )
    except (RuntimeError, ValueError) as error:
        report.messages.append(f"parameter importances could not be computed: {error}")
        return None
    if not importances:
        report.messages.append("parameter importances are empty: no parameter varied across complete trials")
        return None
    report.importances = {name: float(value) for name, value in importances.items()}
    # Optuna rates only parameters that every complete trial has. A conditional one such as
    # n_clusters (not sampled with the moments objective) is left out.
    partial = sorted({name for trial in complete for name in trial.params} - set(importances))
    if partial:
        report.messages.append(
            f"left out of the importances: {', '.join(partial)}, sampled in only some complete trials; "
            "see their slice plots"
        )

    names = list(importances)[::-1]
    values = [importances[name] for name in names]
    figure = Figure(figsize=(7, 0.45 * len(names) + 1.6), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    bars = axes.barh(names, values, color=_COMPLETE_COLOR)
    axes.bar_label(bars, labels=[f"{value:.2f}" for value in values], padding=3)
    axes.set_xlim(0, max(values) * 1.18 or 1.0)
    axes.set_xlabel(f"importance for {label} (fANOVA, share of variance)")
    axes.set_title(f"Parameter importances ({len(complete)} complete trials)")
    return figure


def _history_figure(study: optuna.Study, trials: Sequence[FrozenTrial]) -> Figure:
    figure = Figure(figsize=(8, 4.5), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED and trial.last_step is not None]

    axes.scatter(
        [trial.number for trial in complete],
        [trial.values[0] for trial in complete],
        color=_COMPLETE_COLOR,
        label="complete (best epoch)",
        zorder=3,
    )
    if pruned:
        axes.scatter(
            [trial.number for trial in pruned],
            [trial.intermediate_values[trial.last_step] for trial in pruned],
            color=_PRUNED_COLOR,
            marker="x",
            label="pruned (last reported epoch)",
            zorder=3,
        )
    if complete:
        better = max if study.directions[0] == StudyDirection.MAXIMIZE else min
        steps, running = [], []
        for trial in complete:
            running.append(trial.values[0] if not running else better(running[-1], trial.values[0]))
            steps.append(trial.number)
        axes.step(steps, running, where="post", color=_BEST_COLOR, label="best so far")
    # Trial numbers are whole, so the axis never gets ticks such as 2.5.
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for trial in trials:
        if _is_baseline(trial) and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            value = trial.values[0] if trial.values else trial.intermediate_values.get(trial.last_step)
            if value is None:
                continue
            axes.scatter([trial.number], [value], marker="*", s=260, color=_BASELINE_COLOR, label="trial 0: original settings", zorder=4)
            axes.annotate(
                "original settings",
                (trial.number, value),
                textcoords="offset points",
                xytext=(10, -14),
                fontsize=9,
            )
            break
    if study.directions[0] == StudyDirection.MAXIMIZE:
        axes.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("trial number")
    axes.set_ylabel(_objective_label(study))
    axes.set_title(f"Optimisation history of study {study.study_name}")
    axes.legend(loc="best", fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _curves_figure(trials: Sequence[FrozenTrial], best_trials: Sequence[FrozenTrial]) -> Figure | None:
    curves = []
    for trial in trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        epochs, values = _epoch_curve(trial)
        if epochs:
            curves.append((trial, epochs, values))
    if not curves:
        return None
    best_numbers = {trial.number for trial in best_trials}
    figure = Figure(figsize=(8, 4.5), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    labelled: set[str] = set()

    def label_once(label: str) -> str | None:
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for trial, epochs, values in curves:
        if _is_baseline(trial):
            continue
        if trial.state == TrialState.PRUNED:
            axes.plot(epochs, values, color=_PRUNED_COLOR, alpha=0.55, linewidth=1, linestyle="--", label=label_once("pruned"))
        elif trial.number in best_numbers:
            axes.plot(epochs, values, color=_BEST_COLOR, linewidth=2.2, label=label_once("best" if len(best_numbers) == 1 else "Pareto front"), zorder=3)
        else:
            axes.plot(epochs, values, color=_COMPLETE_COLOR, alpha=0.5, linewidth=1, label=label_once("complete"))
    for trial, epochs, values in curves:
        if _is_baseline(trial):
            axes.plot(epochs, values, color=_BASELINE_COLOR, linewidth=2.2, marker="o", markersize=3, label="trial 0: original settings", zorder=4)
    axes.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("epoch")
    axes.set_ylabel("MOSI-valid Pearson r")
    axes.set_title(f"Per-epoch MOSI-valid correlation ({len(curves)} trials)")
    axes.legend(loc="best", fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _epoch_curve(trial: FrozenTrial) -> tuple[list[int], list[float]]:
    """Return epochs and MOSI-valid correlations from the history attribute, else the intermediate values."""
    history = trial.user_attrs.get("history") or []
    points = [(record.get("epoch"), record.get(METRIC_NAME)) for record in history]
    points = [(epoch, value) for epoch, value in points if epoch is not None and value is not None]
    if not points:
        points = sorted(trial.intermediate_values.items())
    return [epoch for epoch, _ in points], [value for _, value in points]


def _slice_figure(study: optuna.Study, complete: Sequence[FrozenTrial], name: str) -> Figure:
    figure = Figure(figsize=(6, 4), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    having = [trial for trial in complete if name in trial.params]
    distribution = next((trial.distributions[name] for trial in having), None)
    values = [trial.values[0] for trial in having]
    numbers = [trial.number for trial in having]

    log_axis = False
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        # Each trial sits exactly on its choice's tick, trial 0's star included. Trials with
        # the same choice differ in value and colour, not in x position.
        xs = [choices.index(trial.params[name]) for trial in having]
        axes.set_xticks(range(len(choices)), [str(choice) for choice in choices])
        # Every choice keeps its place, also one that no complete trial has sampled yet.
        axes.set_xlim(-0.5, len(choices) - 0.5)
        if max(len(str(choice)) for choice in choices) > 6:
            # Long choice names (modality subsets) would overlap when written horizontally.
            axes.tick_params(axis="x", labelrotation=30)
            for label in axes.get_xticklabels():
                label.set_horizontalalignment("right")
    else:
        xs = [trial.params[name] for trial in having]
        log_axis = isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log
        if log_axis:
            axes.set_xscale("log")
    # White edges keep trials with equal or close values visible where their points overlap.
    points = axes.scatter(xs, values, c=numbers, cmap="viridis", edgecolors="white", linewidths=0.5, label="complete trial")
    baseline = [(x, value) for x, value, trial in zip(xs, values, having) if _is_baseline(trial)]
    if baseline:
        axes.scatter([baseline[0][0]], [baseline[0][1]], marker="*", s=240, facecolors="none", edgecolors=_BASELINE_COLOR, linewidths=1.5, label="trial 0: original settings")
    if log_axis and having:
        _label_log_axis(axes)
        if isinstance(distribution, IntDistribution):
            # Integer settings (cluster counts) read as plain numbers, not as 1.2x10^1.
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    if having:
        colorbar = figure.colorbar(points, ax=axes)
        colorbar.set_label("trial number")
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no complete trial sampled this parameter", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(name)
    axes.set_ylabel(_objective_label(study))
    axes.set_title(f"{_objective_label(study)} against {name}")
    axes.grid(alpha=0.3)
    return figure


def _label_log_axis(axes: Axes) -> None:
    """Label only the major ticks of the log x axis, so that no two tick labels overlap.

    Matplotlib labels minor ticks of a log axis that spans less than a decade, and neighbours
    such as 3x10^-4 and 4x10^-4 then overlap. Here minor ticks stay unlabelled, and a narrow
    axis gets more major ticks: at 1 and 3 times each power of ten when it spans under two
    decades, at 1, 2 and 5 times when it spans under one. Where fewer than two of those fall
    inside the axis (possible only under 0.7 decades), it gets at most four evenly spaced ticks,
    because a log axis that narrow is nearly linear.
    """
    low, high = axes.get_xlim()
    decades = math.log10(high / low)
    axes.xaxis.set_minor_formatter(NullFormatter())
    if decades >= 2.0:
        return
    factors = (1.0, 3.0) if decades >= 1.0 else (1.0, 2.0, 5.0)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    candidates = [factor * 10.0**power for power in range(first, last + 1) for factor in factors]
    if sum(low <= tick <= high for tick in candidates) >= 2:
        axes.xaxis.set_major_locator(LogLocator(base=10.0, subs=factors))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
    # Infinite thresholds make the formatter label every major tick, not only powers of ten.
    axes.xaxis.set_major_formatter(LogFormatterSciNotation(base=10.0, labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))


def _alignment_figure(trial: FrozenTrial) -> Figure | None:
    history = trial.user_attrs.get("history") or []
    modalities = sorted({modality for record in history for modality in (record.get("losses") or {})})
    if not modalities:
        return None
    figure = Figure(figsize=(8, 4.5), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    for modality in modalities:
        points = [
            (record["epoch"], record["losses"][modality])
            for record in history
            if record.get("losses", {}).get(modality) is not None
        ]
        axes.plot([epoch for epoch, _ in points], [loss for _, loss in points], marker="o", markersize=3, label=f"{modality} alignment loss")
    task = [(record["epoch"], record["task_loss"]) for record in history if record.get("task_loss") is not None]
    if task:
        axes.plot([epoch for epoch, _ in task], [loss for _, loss in task], color="grey", linestyle="--", label="task loss (labelled MOSI rows)")
    best_epoch = trial.user_attrs.get("best_epoch")
    if best_epoch is not None:
        axes.axvline(best_epoch, color=_BASELINE_COLOR, linestyle=":", label=f"kept epoch {best_epoch}")
    train_config = trial.user_attrs.get("train_config") or {}
    objective = train_config.get("objective") or trial.params.get("objective")
    suffix = f", objective {objective}" if objective else ""
    marker = " (original settings)" if _is_baseline(trial) else ""
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean alignment loss over the epoch")
    axes.set_title(f"Per-modality alignment loss of trial {trial.number}{marker}{suffix}")
    axes.legend(loc="best", fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _pareto_figure(study: optuna.Study, complete: Sequence[FrozenTrial], front: Sequence[FrozenTrial]) -> Figure:
    figure = Figure(figsize=(7, 4.8), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    front_numbers = {trial.number for trial in front}
    others = [trial for trial in complete if trial.number not in front_numbers]
    axes.scatter([trial.values[0] for trial in others], [trial.values[1] for trial in others], color=_COMPLETE_COLOR, alpha=0.6, label="dominated trial")
    ordered = sorted(front, key=lambda trial: trial.values[0])
    axes.plot([trial.values[0] for trial in ordered], [trial.values[1] for trial in ordered], color=_BEST_COLOR, marker="o", label="Pareto front")
    for trial in ordered:
        axes.annotate(str(trial.number), (trial.values[0], trial.values[1]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    baseline = [trial for trial in complete if _is_baseline(trial)]
    if baseline:
        axes.scatter([baseline[0].values[0]], [baseline[0].values[1]], marker="*", s=260, color=_BASELINE_COLOR, label="trial 0: original settings", zorder=4)
    axes.set_xlabel(f"{_objective_label(study, 0)} ({study.directions[0].name.lower()})")
    axes.set_ylabel(f"{_objective_label(study, 1)} ({study.directions[1].name.lower()})")
    axes.set_title(f"Pareto front of study {study.study_name} ({len(front)} trials)")
    axes.legend(loc="best", fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- HTML -----------------------------------------------------------------------------------


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.params { text-align: left; }
tr.baseline { background: #fff6d5; }
tr.best { background: #e5f5e0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
p.note { color: #8a5300; }
"""


def _render_html(study: optuna.Study, report: Report, images, table_trials: Sequence[FrozenTrial]) -> str:
    escape = html.escape
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    counts = report.describe_counts()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>adaptsearch report: {escape(report.study_name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Study {escape(report.study_name)}</h1>",
        f"<p>Objectives: {escape(', '.join(_objective_label(study, index) + ' (' + direction + ')' for index, direction in enumerate(report.directions)))}. "
        f"Trials: {escape(counts)}. Written {escape(created)}.</p>",
    ]
    for message in report.messages:
        parts.append(f'<p class="note">{escape(message)}</p>')

    best_numbers = {summary.number for summary in report.best}
    heading = "Pareto front and best trials" if report.multi_objective else "Best trials"
    parts += [f"<h2>{heading}</h2>", _metrics_table_html(study, table_trials, best_numbers)]
    if report.importances:
        parts += ["<h2>Parameter importances</h2>", "<table><tr><th>parameter</th><th>importance</th></tr>"]
        parts += [f"<tr><td>{escape(name)}</td><td>{value:.3f}</td></tr>" for name, value in report.importances.items()]
        parts.append("</table>")

    parts.append("<h2>Figures</h2>")
    for caption, filename, data in images:
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)} ({escape(filename)})</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _metrics_table_html(study: optuna.Study, trials: Sequence[FrozenTrial], best_numbers: set[int]) -> str:
    escape = html.escape
    value_headers = "".join(f"<th>{escape(_objective_label(study, index))}</th>" for index in range(len(study.directions)))
    metric_headers = "".join(f"<th>{escape(label)}</th>" for _, label, _ in METRIC_ROWS)
    rows = [f"<table><tr><th>trial</th><th>state</th>{value_headers}<th>best epoch</th>{metric_headers}<th>parameters</th></tr>"]
    for trial in trials:
        classes = []
        label = str(trial.number)
        if _is_baseline(trial):
            classes.append("baseline")
            label += " (original settings)"
        if trial.number in best_numbers:
            classes.append("best")
            label += " ★"
        values = trial.values or [None] * len(study.directions)
        cells = "".join(
            f"<td>{_html_number(value, signed=_is_correlation_objective(study, index))}</td>" for index, value in enumerate(values)
        )
        metrics = trial.user_attrs.get("metrics") or {}
        metric_cells = "".join(f"<td>{_html_metric(key, metrics.get(key), share)}</td>" for key, _, share in METRIC_ROWS)
        params = ", ".join(f"{name}={_short(value)}" for name, value in sorted(trial.params.items()))
        epoch = trial.user_attrs.get("best_epoch")
        rows.append(
            f'<tr class="{" ".join(classes)}"><td>{escape(label)}</td><td>{trial.state.name}</td>{cells}'
            f"<td>{'-' if epoch is None else epoch}</td>{metric_cells}<td class=\"params\">{escape(params)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _is_correlation_objective(study: optuna.Study, index: int) -> bool:
    names = study.metric_names
    if names and index < len(names) and names[index]:
        return names[index] == METRIC_NAME
    # Without stored metric names the first objective is the correlation, as in `_objective_label`.
    return index == 0


def _html_number(value: Any, *, signed: bool) -> str:
    """Format a float to 4 decimals, with a + or - sign only when `signed` (correlations)."""
    if value is None:
        return "-"
    if not isinstance(value, float):
        return html.escape(str(value))
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _html_metric(key: str, value: Any, share: bool) -> str:
    if share:
        return _html_share(value)
    return _html_number(value, signed=key in _SIGNED_METRICS)


def _html_share(value: Any) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
