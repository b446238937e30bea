"""Progress display and closing table on a console that is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from search.progress import RichReporter, summary_table
from search.study import RunSummary, TrialCounts


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=100), buffer


def test_reporter_without_terminal():
    console, buffer = _console()
    reporter = RichReporter(console)

    reporter.start("s", 3, TrialCounts(), None)
    reporter.trial_started(0, 4)
    for epoch in range(1, 5):
        reporter.epoch(0, epoch, 4, 0.1 * epoch)
    reporter.update(TrialCounts(complete=1, pruned=1), 0.4)
    reporter.close()

    output = buffer.getvalue()
    # Without a terminal no cursor-control sequences are written.
    assert "\x1b[" not in output
    # The final state of both bars is printed once: counts, best value and the epoch score.
    assert "2/3" in output
    assert "best +0.4000, 1 pruned" in output
    assert "valid_corr last +0.4000, best +0.4000" in output


def test_epoch_bar_shows_best_epoch():
    console, buffer = _console()
    reporter = RichReporter(console)

    reporter.start("s", 2, TrialCounts(), None)
    reporter.trial_started(0, 3)
    for epoch, score in enumerate([0.2, 0.5763, 0.31], start=1):
        reporter.epoch(0, epoch, 3, score)
    reporter.close()

    # The trial's value is its best epoch's score (+0.5763), so the bar names it next to
    # the last epoch's score.
    assert "valid_corr last +0.3100, best +0.5763" in buffer.getvalue()


def test_epoch_bar_best_resets_per_trial():
    console, buffer = _console()
    reporter = RichReporter(console)

    reporter.start("s", 2, TrialCounts(), None)
    reporter.trial_started(0, 2)
    reporter.epoch(0, 1, 2, 0.9)
    reporter.epoch(0, 2, 2, 0.8)
    reporter.update(TrialCounts(complete=1), 0.9)
    reporter.trial_started(1, 2)
    reporter.epoch(1, 1, 2, -0.2)
    reporter.epoch(1, 2, 2, 0.1)
    reporter.close()

    # Trial 1's best is its own, not trial 0's +0.9000.
    assert "valid_corr last +0.1000, best +0.1000" in buffer.getvalue()


def test_summary_table_compares_with_original():
    console, buffer = _console()
    summary = RunSummary(
        study_name="s", storage="memory", target_trials=4,
        counts=TrialCounts(complete=2, pruned=1, failed=1), wall_seconds=3725.0,
        best_number=3, best_value=0.61, baseline_number=0, baseline_value=0.48, baseline_state="COMPLETE",
        pruned_by_rule={"median": 1},
    )

    console.print(summary_table(summary))

    output = buffer.getvalue()
    # The table shows best and original values, the improvement, counts and wall time.
    assert "+0.6100" in output
    assert "+0.4800" in output
    assert "+0.1300" in output
    assert "3 / 4" in output
    assert "1:02:05" in output
    # Pruned trials are split by the rule that pruned them.
    assert "by the median rule" in output


def test_summary_table_without_trials():
    console, buffer = _console()
    summary = RunSummary(study_name="s", storage="memory", target_trials=2, counts=TrialCounts(), wall_seconds=1.0)

    console.print(summary_table(summary))

    # An empty study renders dashes instead of failing.
    assert "best" in buffer.getvalue()
    assert "improvement" not in buffer.getvalue()
