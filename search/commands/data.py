"""`adaptsearch data ...`: generate the demo world and inspect datasets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from adapters.datasets import SPLIT_NAMES, DatasetConfig, dataset_configs_from_document, read_dataset_file
from adapters.demo import write_demo_world
from adapters.errors import ConfigError, config_errors_prefixed
from adapters.prepare import PreparedData, load_prepared, prepare_dataset
from search.config import StudyConfig

app = typer.Typer(help="Generate demo data and inspect datasets.", no_args_is_help=True)

DEFAULT_CACHE_DIR = Path("studies") / "cache"
# Keys that make a YAML file a study config rather than a file of dataset sections.
STUDY_ONLY_KEYS = frozenset({"source_model", "fixed", "space", "pruner", "objectives"})


@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write source/, target/ and world.yaml into.")],
    segments: Annotated[
        Optional[Path],
        typer.Option("--segments", "--target-segments", help="Segment CSV that the target (MOSI-like) dataset follows."),
    ] = None,
    source_segments: Annotated[
        Optional[Path], typer.Option("--source-segments", help="Segment CSV that the source (MOSEI-like) dataset follows.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the generated features and tables.")] = 0,
    size: Annotated[str, typer.Option(help="Table size without a CSV: default or tiny.")] = "default",
) -> None:
    """Write a synthetic MOSEI-like source and MOSI-like target as SDK .csd files."""
    if size not in ("default", "tiny"):
        raise ConfigError(f"--size must be default or tiny, got {size!r}")
    configs = write_demo_world(
        out_dir, segments_csv=segments, source_segments_csv=source_segments, seed=seed, size=size
    )
    console = Console()
    for kind, config in configs.items():
        console.print(f"{kind}: {config.name} in {config.folder}")
    console.print(f"dataset sections: {out_dir / 'world.yaml'}")


@app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="A dataset YAML (e.g. world.yaml) or a prepared .h5 cache file.")],
    cache_dir: Annotated[
        Path, typer.Option(help="Folder of prepared-data caches, used when PATH is a YAML file.")
    ] = DEFAULT_CACHE_DIR,
) -> None:
    """Prepare (or load) datasets and show their widths, split sizes, drops and labels."""
    if path.suffix in (".h5", ".hdf5"):
        prepared = {path.stem: load_prepared(path)}
    else:
        prepared = {key: prepare_dataset(config, cache_dir) for key, config in _dataset_sections(path).items()}
    console = Console()
    for key, data in prepared.items():
        console.print(_summary_table(key, data))


def _dataset_sections(path: Path) -> dict[str, DatasetConfig]:
    """Return the dataset sections of a YAML file.

    A study config (or a demo world.yaml, which is one) is checked whole, as `run --config`
    checks it, so that a file that passes here does not fail there.
    """
    document = read_dataset_file(path)
    if isinstance(document, Mapping) and (
        {"source", "target"} <= set(document) or STUDY_ONLY_KEYS & set(document)
    ):
        with config_errors_prefixed(str(path)):
            config = StudyConfig.from_dict(document, path.resolve().parent)
        return {"source": config.source, "target": config.target}
    return dataset_configs_from_document(document, path)


def _summary_table(key: str, data: PreparedData) -> Table:
    report = data.report
    title = f"{key}: {data.name}" if key != data.name else data.name
    table = Table(title=title, caption=f"{data.path} (fingerprint {data.fingerprint[:16]})", title_justify="left")
    table.add_column("")
    table.add_column("value")
    table.add_row("modalities (width)", ", ".join(f"{m} ({data.widths[m]})" for m in data.modalities))
    table.add_row("videos train/valid/test", "/".join(str(report["videos"][s]) for s in SPLIT_NAMES))
    table.add_row("segments train/valid/test", "/".join(str(len(data.splits[s])) for s in SPLIT_NAMES))
    dropped = {reason: count for reason, count in report.get("dropped", {}).items() if count}
    table.add_row("dropped segments", ", ".join(f"{r}: {c}" for r, c in dropped.items()) or "none")
    imputed = {m: c for m, c in report.get("imputed_segments", {}).items() if c}
    if imputed:
        table.add_row("imputed segments", ", ".join(f"{m}: {c}" for m, c in imputed.items()))
    table.add_row(
        "non-finite values (share)",
        ", ".join(
            f"{m}: {report['nonfinite_values'].get(m, 0)} ({report['nonfinite_share'].get(m, 0.0):.2%})"
            for m in data.modalities
        ),
    )
    table.add_row(
        "cells filled with train mean", ", ".join(f"{m}: {report['nonfinite_replaced'].get(m, 0)}" for m in data.modalities)
    )
    missing = {m: names for m, names in report.get("videos_missing", {}).items() if names}
    if missing:
        table.add_row(
            "videos missing",
            "; ".join(f"{m}: {len(n)} ({', '.join(n[:5])}{' ...' if len(n) > 5 else ''})" for m, n in missing.items()),
        )
    if report.get("videos_without_split"):
        table.add_row("videos in no split", str(len(report["videos_without_split"])))
    low, high = report["label_range"]
    table.add_row("label range", f"[{low:.2f}, {high:.2f}]")
    table.add_row(
        "label mean (all; train/valid/test)",
        f"{report['label_mean']:.3f}; "
        + "/".join("-" if report["label_mean_by_split"][s] is None else f"{report['label_mean_by_split'][s]:.3f}" for s in SPLIT_NAMES),
    )
    return table
