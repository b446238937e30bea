"""`adaptsearch run | best | dashboard`: start, read and show Optuna studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from adapters.errors import ConfigError
from adapters.io import make_parent_folder
from search.commands import FLAG
from search.dashboard import DEFAULT_HOST, DEFAULT_PORT, serve_dashboard
from search.storage import DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_STORAGE_URL, check_url
from search.study import DEFAULT_KEEP_ADAPTERS, DEFAULT_STUDY_NAME

_DATA = "Data"
_SEARCH = "Search"
_STORAGE = "Storage"

StudyOption = Annotated[
    str, typer.Option("--study", help="Study name inside the storage.", rich_help_panel=_STORAGE)
]
StorageOption = Annotated[
    str,
    typer.Option(
        "--storage",
        help="Database URL of the studies; sqlite paths are relative to the working folder.",
        rich_help_panel=_STORAGE,
    ),
]


def run(
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="Study config YAML (source/target datasets, source_model, fixed, space, pruner). "
            "Without it the search runs on the embedded demo world.",
            rich_help_panel=_DATA,
        ),
    ] = None,
    space: Annotated[
        Optional[Path],
        typer.Option(
            "--space",
            help="Search-space YAML; replaces the config's space. Default: STUDIES_DIR/space.yaml.",
            rich_help_panel=_SEARCH,
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            "--trials",
            min=1,
            help="Finished (complete or pruned) trials the study should hold in total; "
            "a rerun finishes the remainder.",
            rich_help_panel=_SEARCH,
        ),
    ] = 100,
    timeout: Annotated[
        Optional[float],
        typer.Option(
            "--timeout", min=0.001, help="Seconds after which no new trial starts.", rich_help_panel=_SEARCH
        ),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Sampler seed (unset: random).", rich_help_panel=_SEARCH)
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=1,
            help="Worker processes sharing the study, each with --threads torch threads.",
            rich_help_panel=_SEARCH,
        ),
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="Torch threads per worker. Adapter batches are small, so one thread per "
            "worker and --jobs for more cores is usually fastest.",
            rich_help_panel=_SEARCH,
        ),
    ] = 1,
    study: StudyOption = DEFAULT_STUDY_NAME,
    storage: StorageOption = DEFAULT_STORAGE_URL,
    studies_dir: Annotated[
        Path,
        typer.Option(
            "--studies-dir",
            help="Folder of caches (prepared data, source model, prototypes), the demo world and space.yaml.",
            rich_help_panel=_STORAGE,
        ),
    ] = Path("studies"),
    heartbeat_interval: Annotated[
        int,
        typer.Option(
            "--heartbeat-interval",
            min=1,
            help="Seconds between heartbeats of a running trial; a trial silent for twice "
            "this long is failed and queued again.",
            rich_help_panel=_STORAGE,
        ),
    ] = DEFAULT_HEARTBEAT_INTERVAL_S,
    artifacts: Annotated[
        Optional[Path],
        typer.Option(
            "--artifacts",
            help="Folder of the stored adapters. Default: <db>-artifacts beside a SQLite file, "
            "STUDIES_DIR/artifacts for server databases.",
            rich_help_panel=_STORAGE,
        ),
    ] = None,
    keep_adapters: Annotated[
        int,
        typer.Option(
            "--keep-adapters",
            min=0,
            help="Store the adapters of this many best complete trials (0: none).",
            rich_help_panel=_STORAGE,
        ),
    ] = DEFAULT_KEEP_ADAPTERS,
    multi_objective: Annotated[
        bool,
        typer.Option(
            "--multi-objective",
            help="Maximise the MOSI-valid correlation and minimise the MOSI-valid MAE together "
            "(a Pareto front; same as 'objectives: \\[valid_corr, valid_mae]' in the config). "
            "Pruning is off, because Optuna cannot prune multi-objective studies.",
            rich_help_panel=_SEARCH,
            metavar=FLAG,
        ),
    ] = False,
) -> None:
    """Run or resume a hyperparameter search until the study contains --trials finished trials."""
    from search.config import MULTI_OBJECTIVE
    from search.progress import RichReporter, summary_table
    from search.study import resolve_config, run_study

    # A bad URL fails before the demo world is generated or any data is prepared.
    check_url(storage)
    study_config = resolve_config(config, studies_dir, space_path=space)
    if multi_objective:
        study_config = study_config.with_objectives(MULTI_OBJECTIVE)
    console = Console(stderr=True)
    try:
        summary = run_study(
            study_config,
            trials=trials,
            timeout=timeout,
            study_name=study,
            storage=storage,
            seed=seed,
            jobs=jobs,
            studies_dir=studies_dir,
            reporter=RichReporter(console),
            heartbeat_interval=heartbeat_interval,
            threads=threads,
            artifacts_dir=artifacts,
            keep_adapters=keep_adapters,
        )
    except KeyboardInterrupt:
        # Interrupted before the first trial (while preparing data or opening the study).
        typer.echo("interrupted before any trial started", err=True)
        raise typer.Exit(130) from None
    Console().print(summary_table(summary))
    if summary.interrupted:
        typer.echo(
            f"interrupted after {summary.counts.finished} of {trials} trials; "
            "run the same command again to finish the remainder",
            err=True,
        )
        raise typer.Exit(130)


def best(
    study: StudyOption = DEFAULT_STUDY_NAME,
    storage: StorageOption = DEFAULT_STORAGE_URL,
    top: Annotated[
        int,
        typer.Option(
            "--top", min=1, help="Number of best trials to list; a multi-objective study lists its whole Pareto front."
        ),
    ] = 5,
    export: Annotated[
        Optional[Path],
        typer.Option(
            "--export",
            help="Write the best trial's full run parameters to this YAML file. In a multi-objective "
            "study the best trial is the Pareto-front trial with the highest valid_corr.",
        ),
    ] = None,
    trial: Annotated[
        Optional[int], typer.Option("--trial", min=0, help="Export this trial number instead of the best.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --export file.", metavar=FLAG)] = False,
    adapters_out: Annotated[
        Optional[Path],
        typer.Option(
            "--adapters",
            help="Also copy the exported trial's stored adapters (a .pt file) to this path.",
        ),
    ] = None,
    artifacts: Annotated[
        Optional[Path],
        typer.Option("--artifacts", help="Folder of the stored adapters, if not the default of the storage."),
    ] = None,
) -> None:
    """List the best trials of a study and export one as params.yaml for 'adaptsearch train'."""
    from search.export import best_trials, check_export_path, export_params, is_multi_objective, load_study, trial_rows
    from search.objective import ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN

    # Both options act on the exported trial, so without --export they would do nothing.
    if trial is not None and export is None:
        raise ConfigError(f"--trial {trial} chooses the trial to export and needs --export; add --export params.yaml")
    if adapters_out is not None and export is None:
        raise ConfigError("--adapters needs --export, which chooses the trial; add --export params.yaml")
    if export is not None:
        # Checked before the table is printed, so that the error is the command's only output.
        check_export_path(export, force=force)
    if adapters_out is not None:
        # Checked before the export is written, so that a bad path leaves no half-done export.
        if adapters_out.exists() and not force:
            raise ConfigError(f"{adapters_out} exists; pass --force to overwrite it")
        make_parent_folder(adapters_out)

    loaded = load_study(study, storage)
    ranked = best_trials(loaded, top=top)
    shown = list(ranked)
    baseline = [
        frozen
        for frozen in loaded.get_trials(deepcopy=False)
        if frozen.user_attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN and frozen.values
    ]
    if baseline and baseline[0].number not in {frozen.number for frozen in shown}:
        shown.append(baseline[0])
    metric_names = loaded.metric_names if is_multi_objective(loaded) else None
    Console().print(_best_table(loaded.study_name, trial_rows(shown), len(loaded.trials), metric_names))

    if export is not None:
        path, exported = export_params(loaded, export, storage_url=storage, trial_number=trial, force=force)
        typer.echo(f"wrote trial {exported.number} ({exported.values[0]:+.4f}) to {path}", err=True)
        if adapters_out is not None:
            from search.artifacts import artifact_store_for, download_adapters

            store = artifact_store_for(storage, artifacts, create=False)
            written = download_adapters(loaded, exported.number, store, adapters_out)
            typer.echo(f"wrote the adapters of trial {exported.number} to {written}", err=True)


def _best_table(name: str, rows, total: int, metric_names: list[str] | None = None) -> Table:
    """Build the best-trials table; with several `metric_names`, one column per objective (the Pareto front)."""
    shown = "Pareto front" if metric_names else "best trials"
    table = Table(title=f"study {name}: {shown} ({total} trials stored)", header_style="bold")
    table.add_column("trial", justify="right")
    for metric in metric_names or ["valid_corr"]:
        table.add_column(metric, justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("parameters")
    for row in rows:
        label = f"{row.number} (original)" if row.origin else str(row.number)
        params = ", ".join(f"{key}={_short(value)}" for key, value in row.params.items())
        seconds = "-" if row.seconds is None else f"{row.seconds:.1f}"
        epoch = "-" if row.best_epoch is None else str(row.best_epoch)
        # The correlation is signed; the MAE of a multi-objective study is never negative.
        cells = [f"{row.value:+.4f}"] + [f"{value:.4f}" for value in (row.values[1:] if metric_names else ())]
        table.add_row(label, *cells, epoch, seconds, params)
    return table


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def dashboard(
    study: Annotated[
        Optional[str],
        typer.Option("--study", help="Check that this study exists before serving.", rich_help_panel=_STORAGE),
    ] = None,
    storage: StorageOption = DEFAULT_STORAGE_URL,
    host: Annotated[str, typer.Option("--host", help="Address to bind; the dashboard has no login.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = DEFAULT_PORT,
    artifacts: Annotated[
        Optional[Path],
        typer.Option("--artifacts", help="Folder of the stored adapters, if not the default of the storage."),
    ] = None,
) -> None:
    """Serve optuna-dashboard on the study storage (blocks until Ctrl-C)."""
    serve_dashboard(storage, study_name=study, host=host, port=port, artifacts=artifacts)


def register(app: typer.Typer) -> None:
    """Add the study commands to the top-level app."""
    app.command("run")(run)
    app.command("best")(best)
    app.command("dashboard")(dashboard)
