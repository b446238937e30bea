"""`adaptsearch train --params params.yaml`: the final retraining from an exported configuration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from adapters.final import FinalResult, retrain
from adapters.params import load_params
from search.commands import FLAG

_ROWS = (
    ("Pearson r", "corr"),
    ("MAE", "mae"),
    ("Acc-2 (neg / non-neg)", "acc2_nonneg"),
    ("Acc-2 (neg / pos)", "acc2_nonzero"),
    ("F1 (neg / non-neg)", "f1_nonneg"),
    ("F1 (neg / pos)", "f1_nonzero"),
    ("Acc-7", "acc7"),
)


def _format(value: float | None, reason: str | None = None) -> str:
    if value is None:
        return f"undefined ({reason})" if reason else "n/a"
    return f"{value:.4f}"


def result_table(result: FinalResult) -> Table:
    """Build the table of test metrics (and validation r) of the tuned and the original settings."""
    table = Table(title=f"target test split ({result.tuned.test.n} segments)", title_justify="left")
    table.add_column("metric")
    table.add_column("tuned", justify="right")
    if result.original is not None:
        table.add_column("original settings", justify="right")
    outcomes = [result.tuned] + ([result.original] if result.original is not None else [])
    for label, key in _ROWS:
        cells = []
        for outcome in outcomes:
            reason = outcome.test.corr_reason if key == "corr" else None
            cells.append(_format(getattr(outcome.test, key), reason))
        table.add_row(label, *cells)
    valid_label = "valid r (last epoch, trained on)" if result.include_valid else "valid r (kept epoch)"
    table.add_row(valid_label, *[_format(o.valid.corr, o.valid.corr_reason) for o in outcomes])
    table.add_row("kept epoch", *[str(o.best_epoch) for o in outcomes])
    table.add_row("predictions collapsed", *[str(o.diagnostics["test"]["collapsed"]) for o in outcomes])
    return table


def train(
    params: Annotated[Path, typer.Option("--params", help="Parameter file written by 'adaptsearch best --export'.")],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Run folder to create (default: STUDIES/runs/<time>-<objective>).")
    ] = None,
    include_valid: Annotated[
        bool, typer.Option(
            "--include-valid", help="Also train on the target validation split and keep the last epoch.", metavar=FLAG
        )
    ] = False,
    compare_original: Annotated[
        bool,
        typer.Option(
            "--compare-original/--no-compare-original",
            help="Also train the original script's settings on the same data and show them beside the result.",
            metavar=FLAG,
        ),
    ] = True,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="torch CPU threads. Adapter batches are small, so one thread is fastest, most of all on a busy machine.",
        ),
    ] = 1,
    studies: Annotated[Path, typer.Option("--studies-dir", "--studies", help="Studies folder (as run's --studies-dir); prepared data, source models and prototypes are cached in its cache/ folder.")] = Path(
        "studies"
    ),
) -> None:
    """Retrain adapters with exported parameters, test once on the target test split, compare with the original settings."""
    # Measured with train_adapters on the demo world (sinkhorn, 5% labels) on 2 cores shared
    # with other jobs (load 7): 3.7 s per epoch with one torch thread, 44 s with two.
    torch.set_num_threads(threads)
    run_params = load_params(params)
    result = retrain(run_params, studies, out, include_valid=include_valid, compare_original=compare_original)
    console = Console()
    console.print(result_table(result))
    line = reproduction_line(run_params.meta, result)
    if line:
        console.print(line)
    console.print(f"run folder: {result.run_dir}")


# Retraining a trial on the same data, seed and CPU repeats its arithmetic, so a larger
# difference is a real one (other data, another device or torch build).
REPRODUCED_TOLERANCE = 1e-6


def reproduction_line(meta: Mapping[str, Any], result: FinalResult) -> str | None:
    """Compare the retrained valid r with the exported trial's value, or None when they are not comparable.

    They are comparable when the export contains a single-objective trial value and the
    retraining kept its best epoch on the valid split, as the search did.
    """
    value = meta.get("value")
    corr = result.tuned.valid.corr
    if result.include_valid or not isinstance(value, (int, float)) or corr is None:
        return None
    difference = abs(corr - value)
    trial = meta.get("trial", "?")
    if difference <= REPRODUCED_TOLERANCE:
        return f"valid r {corr:.6f} reproduces trial {trial}'s {value:.6f} (difference {difference:.1e})"
    return (
        f"valid r {corr:.6f} differs from trial {trial}'s {value:.6f} by {difference:.1e}; "
        "other data, another device or torch build, or several seeds per trial change the training"
    )


def register(app: typer.Typer) -> None:
    """Add the train command to the top-level app."""
    app.command("train")(train)
