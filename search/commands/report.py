"""`adaptsearch report`: figures and an HTML page of a study, with a summary in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from search.storage import DEFAULT_STORAGE_URL
from search.study import DEFAULT_STUDY_NAME


def report(
    study: Annotated[str, typer.Option("--study", help="Study name inside the storage.")] = DEFAULT_STUDY_NAME,
    storage: Annotated[
        str,
        typer.Option("--storage", help="Database URL of the studies; sqlite paths are relative to the working folder."),
    ] = DEFAULT_STORAGE_URL,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Folder for the PNG figures and report.html. Default: reports/STUDY."),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Number of best trials in the trial table of report.html.")] = 10,
) -> None:
    """Write PNG figures and a self-contained HTML report of a study."""
    from search.export import load_study
    from search.report import build_report

    loaded = load_study(study, storage)
    result = build_report(loaded, out if out is not None else Path("reports") / study, top=top)

    console = Console()
    console.print(_summary_table(result))
    for table in _settings_tables(result):
        console.print(table)
    for message in result.messages:
        console.print(f"[yellow]note:[/yellow] {message}", highlight=False)
    console.print(f"wrote {len(result.figures)} figures and {result.html_path}", highlight=False)


def _summary_table(result) -> Table:
    counts = result.describe_counts()
    title = "Pareto front" if result.multi_objective else "best trial"
    table = Table(title=f"study {result.study_name}: {title}; trials: {counts}", header_style="bold")
    table.add_column("trial", justify="right")
    for index, direction in enumerate(result.directions):
        table.add_column(_column_name(index, direction, len(result.directions)), justify="right")
    table.add_column("MAE", justify="right")
    table.add_column("Acc-2 non-zero", justify="right")
    table.add_column("F1 non-zero", justify="right")
    table.add_column("Acc-7", justify="right")

    for row in _shown_rows(result):
        values = list(row.values) if row.values else [None] * len(result.directions)
        metrics = row.metrics
        table.add_row(
            _label(row),
            *[_number(value) for value in values],
            _number(metrics.get("mae"), signed=False),
            _share(metrics.get("acc2_nonzero")),
            _share(metrics.get("f1_nonzero")),
            _share(metrics.get("acc7")),
        )

    if result.importances:
        ranked = ", ".join(f"{name} {value:.2f}" for name, value in result.importances.items())
        table.caption = f"parameter importances: {ranked}"
    return table


# Trials per settings table: a parameter column and five value columns fit 80 terminal columns.
SETTINGS_COLUMNS = 5


def _settings_tables(result) -> list[Table]:
    """Build tables of the shown trials' sampled settings, a row per parameter, five trials per table."""
    rows = _shown_rows(result)
    names = sorted({name for row in rows for name in row.params})
    if not names:
        return []
    tables = []
    for start in range(0, len(rows), SETTINGS_COLUMNS):
        chunk = rows[start : start + SETTINGS_COLUMNS]
        table = Table(title="sampled settings" if start == 0 else None, header_style="bold")
        table.add_column("parameter", no_wrap=True)
        for row in chunk:
            table.add_column(_label(row), justify="right")
        for name in names:
            table.add_row(name, *[_short(row.params[name]) if name in row.params else "-" for row in chunk])
        tables.append(table)
    return tables


def _shown_rows(result) -> list:
    """Return the best trials of the report, with trial 0 appended when it is not among them."""
    rows = list(result.best)
    if result.baseline is not None and result.baseline.number not in {row.number for row in rows}:
        rows.append(result.baseline)
    return rows


def _label(row) -> str:
    return f"{row.number} (original)" if row.baseline else str(row.number)


def _number(value, *, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _share(value) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    """Add the `report` command to the top-level app."""
    app.command("report")(report)


def _column_name(index: int, direction: str, count: int) -> str:
    # adaptsearch's multi-objective studies are (valid_corr, valid_mae); see search.report.
    if index == 0:
        return "valid_corr"
    if index == 1 and count == 2:
        return "valid_mae"
    return f"objective {index} ({direction})"
