"""Rich progress display of a running study and its closing table.

On a terminal, two bars show the study's finished trials (with the best value so far and
the pruned count) and the epochs of the running trial (with the last epoch's and the best
epoch's MOSI-valid correlation). When the output is not a terminal
(a log file, CI), Rich draws no live bars and prints the bars once when the run stops. There
the log line that `search.study` writes for each finished trial is the running record.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from search.objective import METRIC_NAME
from search.study import Reporter, RunSummary, TrialCounts


class RichReporter(Reporter):
    """Show a trials bar and an epoch bar on `console` while a study runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._trials: TaskID | None = None
        self._epochs: TaskID | None = None
        # (trial number, best score) of the trial the epoch bar shows.
        self._best_score: tuple[int, float] | None = None

    def start(self, study_name: str, target_trials: int, counts: TrialCounts, best: float | None) -> None:
        self.progress.start()
        self._trials = self.progress.add_task(
            f"study {study_name}",
            total=target_trials,
            completed=min(counts.finished, target_trials),
            status=_status(counts, best),
        )

    def trial_started(self, number: int, epochs: int) -> None:
        description = f"trial {number}"
        if self._epochs is None:
            self._epochs = self.progress.add_task(description, total=epochs, status="")
        else:
            self.progress.reset(self._epochs, total=epochs, description=description, status="")

    def epoch(self, number: int, epoch: int, epochs: int, score: float) -> None:
        if self._epochs is None:
            return
        # A complete trial's value is its best epoch's score and a pruned trial's is its last
        # epoch's, so the bar shows both, each named.
        # NOTE: with seeds > 1 a complete trial's value is the mean of the seeds' best scores,
        # while epochs are reported for the first seed only.
        if self._best_score is None or self._best_score[0] != number or score > self._best_score[1]:
            self._best_score = (number, score)
        status = f"{METRIC_NAME} last {score:+.4f}, best {self._best_score[1]:+.4f}"
        self.progress.update(self._epochs, completed=epoch, status=status)

    def update(self, counts: TrialCounts, best: float | None, running: int = 0) -> None:
        if self._trials is None:
            return
        status = _status(counts, best)
        if running:
            status += f", {running} running"
        self.progress.update(self._trials, completed=counts.finished, status=status)

    def close(self) -> None:
        self.progress.stop()


def _status(counts: TrialCounts, best: float | None) -> str:
    best_text = "-" if best is None else f"{best:+.4f}"
    return f"best {best_text}, {counts.pruned} pruned, {counts.failed} failed"


def summary_table(summary: RunSummary) -> Table:
    """Return the closing table: best trial against trial 0 (the original settings), counts, wall time."""
    table = Table(title=f"study {summary.study_name}", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("trial", justify="right")
    table.add_column(METRIC_NAME, justify="right")

    table.add_row("best", _text(summary.best_number), _value(summary.best_value))
    baseline_label = "original settings"
    if summary.baseline_state not in (None, "COMPLETE"):
        baseline_label += f" ({summary.baseline_state.lower()})"
    table.add_row(baseline_label, _text(summary.baseline_number), _value(summary.baseline_value))
    if summary.best_value is not None and summary.baseline_value is not None:
        table.add_row("improvement", "", f"{summary.best_value - summary.baseline_value:+.4f}")

    counts = summary.counts
    table.add_section()
    table.add_row("finished / requested", "", f"{counts.finished} / {summary.target_trials}")
    table.add_row("complete", "", str(counts.complete))
    table.add_row("pruned", "", str(counts.pruned))
    for rule, count in sorted(summary.pruned_by_rule.items()):
        table.add_row(f"  by the {rule} rule", "", str(count))
    table.add_row("failed", "", str(counts.failed))
    if counts.running:
        table.add_row("running (other workers)", "", str(counts.running))
    table.add_row("wall time", "", _duration(summary.wall_seconds))
    return table


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _value(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.4f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"
