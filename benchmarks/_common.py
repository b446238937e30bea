"""Shared parts of the benchmarks: options, timing, machine facts, demo data, table and JSON output.

Every benchmark module builds its figures as a list of row dicts plus a list of goals, and
`publish` prints them as rich tables and writes them, with the machine facts and the
command line, to ``benchmarks/results/NAME.json`` (or ``--results-dir``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Keys every result file has; the smoke test checks them.
COMMON_KEYS = ("benchmark", "quick", "command", "machine", "parameters", "rows", "goals")


def parse_args(
    name: str, description: str, argv: Sequence[str] | None, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """Parse the options every benchmark takes (``--quick``, ``--results-dir``) plus its own."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes that finish in seconds (used by the smoke test).")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="Folder of the JSON result file (default: benchmarks/results)."
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def machine_info() -> dict[str, Any]:
    """Return the facts that make a figure comparable: CPU, cores, load, library versions, date."""
    import numpy
    import torch

    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1_5_15": load,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def use_all_cores() -> int:
    """Set torch's intra-op threads to the number of usable cores and return that number."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    return cores


@dataclass
class Timing:
    """Durations of repeated runs, in seconds."""

    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def minimum(self) -> float:
        return min(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.minimum, "max_s": max(self.runs), "runs_s": self.runs}


def time_repeats(function: Callable[[], Any], *, repeats: int, warmup: int = 1) -> Timing:
    """Call `function` `warmup` times untimed, then `repeats` times timed with ``perf_counter``."""
    for _ in range(warmup):
        function()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return Timing(runs)


@dataclass
class Stopwatch:
    """Accumulated seconds and call counts per label, for timing wrapped functions."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def measure(self, label: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(label, time.perf_counter() - started)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, label: str, function: Callable) -> Callable:
        """Return `function` timed under `label`."""

        def timed(*args, **kwargs):
            with self.measure(label):
                return function(*args, **kwargs)

        timed.__wrapped__ = function  # type: ignore[attr-defined]
        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


@contextmanager
def patched(owner: Any, name: str, replacement: Any):
    """Replace ``owner.name`` with `replacement` inside the block (benchmark instrumentation)."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield original
    finally:
        setattr(owner, name, original)


def goal(name: str, target: str, measured: float | None, met: bool | None, note: str = "") -> dict[str, Any]:
    """Return one goal row: what was asked, what was measured, whether it was met and why not."""
    return {"goal": name, "target": target, "measured": measured, "met": met, "note": note}


def quiet_logs() -> None:
    """Silence the info logs of optuna and adaptsearch so that only the tables are printed."""
    import logging
    import warnings

    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("adapters").setLevel(logging.ERROR)
    logging.getLogger("search").setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"adapters\..*")
    # The tiny demo world of --quick has fewer source rows than the sampled cluster counts.
    warnings.filterwarnings("ignore", message=r"only \d+ source rows", category=RuntimeWarning)


def write_demo(folder: Path, quick: bool) -> dict:
    """Write the demo world (MOSI-size target; ``tiny`` in quick mode) and return its dataset configs."""
    from adapters.demo import write_demo_world

    return write_demo_world(folder, size="tiny" if quick else "default", seed=0)


def default_space(quick: bool, **fixed: Any):
    """Return the packaged default search space, with `fixed` values replacing sampled ones.

    In quick mode ``epochs`` is fixed to 6 (one more than the pruner's warm-up), so that a
    trial takes a fraction of a second on the tiny world.
    """
    import yaml

    from search.space import PACKAGED_SPACE_FILE, SearchSpace

    mapping = yaml.safe_load(PACKAGED_SPACE_FILE.read_text(encoding="utf-8"))
    if quick:
        fixed = {"epochs": 6, **fixed}
    for name, value in fixed.items():
        mapping["parameters"][name] = {"fixed": value}
    return SearchSpace.from_dict(mapping, source="benchmark space")


def benchmark_threads(args: argparse.Namespace) -> int:
    """Set and return torch's threads: ``--threads``, else 1 in quick mode, else all usable cores.

    Quick mode uses one thread because on a machine shared with other processes, several
    OpenMP threads per process wait on each other and run many times slower.
    """
    import torch

    threads = args.threads if getattr(args, "threads", None) is not None else (1 if args.quick else use_all_cores())
    torch.set_num_threads(threads)
    return threads


def source_model_config(quick: bool):
    """Return the source model config of the benchmarks: the default, or 3 epochs in quick mode."""
    from adapters.params import SourceModelConfig

    return SourceModelConfig(epochs=3, patience=2) if quick else SourceModelConfig()


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def publish(
    name: str,
    args: argparse.Namespace,
    *,
    title: str,
    columns: Sequence[tuple[str, str, str]],
    rows: list[dict[str, Any]],
    goals: list[dict[str, Any]],
    parameters: dict[str, Any],
    extra: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
    tables: Sequence[tuple[str, Sequence[tuple[str, str, str]], list[dict[str, Any]]]] = (),
) -> dict[str, Any]:
    """Print the rows and goals as tables and write the result file; return its content.

    Parameters
    ----------
    columns : sequence of (key, header, format spec)
        The row keys shown in the table; rows may hold more keys, all of which go to JSON.
    tables : sequence of (title, columns, rows)
        Further tables printed before the main one; their rows go to JSON only through `extra`.
    """
    payload = {
        "benchmark": name,
        "quick": bool(args.quick),
        "command": " ".join(["python", "-m", f"benchmarks.{name}", *args.argv]),
        "machine": machine or machine_info(),
        "parameters": parameters,
        "rows": rows,
        "goals": goals,
        **(extra or {}),
    }
    # Wide enough for the trial tables when the output is a file or a pipe (rich assumes 80 there).
    console = Console(width=None if sys.stdout.isatty() else 200)
    for table_title, table_columns, table_rows in (*tables, (title, columns, rows)):
        console.print(_table(table_title, table_columns, table_rows))

    if goals:
        goal_table = Table(title="goals", header_style="bold")
        for header in ("goal", "target", "measured", "met", "note"):
            goal_table.add_column(header)
        for item in goals:
            goal_table.add_row(item["goal"], item["target"], _cell(item["measured"], ".3g"), _cell(item["met"], ""), item["note"])
        console.print(goal_table)

    machine_line = payload["machine"]
    console.print(
        f"{machine_line['cpu_model']}, {machine_line['usable_cores']} cores, load {machine_line['load_average_1_5_15']}, "
        f"torch {machine_line['torch']}, {machine_line['date']}"
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n", encoding="utf-8")
    console.print(f"wrote {path}")
    return payload


def _table(title: str, columns: Sequence[tuple[str, str, str]], rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, header_style="bold")
    for index, (_, header, _) in enumerate(columns):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(key), fmt) for key, _, fmt in columns))
    return table


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
