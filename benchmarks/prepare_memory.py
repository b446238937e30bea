"""Peak memory and read speed of preparing a large .csd file, against reading it raw with h5py.

The benchmark writes one modality file of at least ``--gigabytes`` GB (default 2.0) in the
CMU Multimodal SDK layout (``/<root>/data/<video>/features`` and ``intervals``). It writes one
video at a time, so the writer itself stays small. A label file (10 segments per video) and a
split file go beside it, all under a temporary folder in /tmp that is deleted afterwards.
Then, each in a fresh Python process:

* ``prepare``: ``adapters.prepare.prepare_dataset`` builds the prepared cache from the file
  (content hash for the fingerprint, per-video pooling, normalisation, HDF5 write);
* ``raw``: h5py opens the file and reads every ``features`` dataset once.

Each child reports its peak resident set size (``ru_maxrss`` of the child itself, i.e. the
kernel's high-water mark), its resident size after imports, and its seconds; MB/s is the
file size divided by the seconds. Each is run twice: "cold" after asking the kernel to drop
the file from the page cache (``posix_fadvise(DONTNEED)`` after ``fsync``; not guaranteed),
and "warm" right after a read of the file.

Run: ``python -m benchmarks.prepare_memory [--quick] [--gigabytes G]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import _common

NAME = "prepare_memory"
GOAL_PEAK_MB = 600.0
GOAL_SPEED_SHARE = 0.50
SEGMENTS_PER_VIDEO = 10
FRAME_SECONDS = 0.1
ROOT = "BigFeatures"
LABEL_ROOT = "Labels"


def write_large_csd(folder: Path, *, videos: int, width: int, frames: int, seed: int = 0) -> dict:
    """Write the big feature file, the label file and splits.json; return the dataset section."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"video{index:04d}" for index in range(videos)]
    strings = h5py.string_dtype()
    starts = np.arange(frames) * FRAME_SECONDS
    frame_intervals = np.stack([starts, starts + FRAME_SECONDS], axis=1)
    bounds = np.linspace(0.0, frames * FRAME_SECONDS, SEGMENTS_PER_VIDEO + 1)
    segment_intervals = np.stack([bounds[:-1], bounds[1:]], axis=1)

    with h5py.File(folder / "big.csd", "w") as features_file, h5py.File(folder / "labels.csd", "w") as labels_file:
        data = features_file.create_group(f"{ROOT}/data")
        labels = labels_file.create_group(f"{LABEL_ROOT}/data")
        for name in names:
            group = data.create_group(name)
            group.create_dataset("features", data=rng.standard_normal((frames, width), dtype=np.float32))
            group.create_dataset("intervals", data=frame_intervals)
            label_group = labels.create_group(name)
            sentiment = np.clip(rng.normal(0.0, 1.5, size=(SEGMENTS_PER_VIDEO, 1)), -3.0, 3.0).astype(np.float32)
            label_group.create_dataset("features", data=sentiment)
            label_group.create_dataset("intervals", data=segment_intervals)
        for handle, root in ((features_file, ROOT), (labels_file, LABEL_ROOT)):
            meta = handle.create_group(f"{root}/metadata")
            meta.create_dataset("root name", shape=(1,), dtype=strings, data=[root])
            meta.create_dataset("dimension names", shape=(1,), dtype=strings, data=["synthetic"])

    cut_train, cut_valid = int(videos * 0.7), int(videos * 0.85)
    folds = {"train": names[:cut_train], "valid": names[cut_train:cut_valid], "test": names[cut_valid:]}
    (folder / "splits.json").write_text(json.dumps(folds) + "\n", encoding="utf-8")
    return {
        "name": "big",
        "format": "csd",
        "folder": str(folder),
        "modalities": {"visual": "big.csd"},
        "labels": "labels.csd",
        "split": {"kind": "file", "path": "splits.json"},
    }


def _resident_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, section_json: str, cache_dir: str) -> None:
    """Run one measurement in this process and print its figures as one JSON line."""
    import h5py

    from adapters.datasets import DatasetConfig
    from adapters.prepare import prepare_dataset

    _common.quiet_logs()
    section = json.loads(section_json)
    config = DatasetConfig.from_dict(section, section["folder"])
    path = config.path_of(config.modalities["visual"])
    after_imports = _resident_mb()
    started = time.perf_counter()
    if mode == "prepare":
        data = prepare_dataset(config, cache_dir)
        detail = {"segments": {name: len(split) for name, split in data.splits.items()}}
    else:
        read = 0
        with h5py.File(path, "r") as handle:
            for video in handle[f"{ROOT}/data"].values():
                read += video["features"][()].nbytes
        detail = {"features_bytes_read": read}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_mb": peak_mb, "after_imports_mb": after_imports, **detail}))


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (advisory)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def run_child(mode: str, section: dict, cache_dir: Path) -> dict:
    command = [sys.executable, "-m", f"benchmarks.{NAME}", "--child", mode, "--section", json.dumps(section),
               "--cache-dir", str(cache_dir)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if finished.returncode != 0:
        raise RuntimeError(f"{mode} child failed with exit code {finished.returncode}:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    _common.quiet_logs()
    if args.quick:
        videos, width, frames = 6, 64, 200
    else:
        videos, width = args.videos, args.width
        frames = int(np.ceil(args.gigabytes * 1e9 / (videos * width * 4)))

    folder = Path(tempfile.mkdtemp(prefix="adaptsearch-prepare-memory-", dir="/tmp"))
    try:
        started = time.perf_counter()
        section = write_large_csd(folder / "data", videos=videos, width=width, frames=frames)
        write_s = time.perf_counter() - started
        path = folder / "data" / "big.csd"
        size_mb = path.stat().st_size / 1e6

        rows = []
        for cache in ("cold", "warm"):
            for mode in ("raw", "prepare"):
                cache_dir = folder / f"cache-{cache}-{mode}"
                if cache == "cold":
                    drop_from_page_cache(path)
                result = run_child(mode, section, cache_dir)
                rows.append({
                    "mode": mode,
                    "page_cache": cache,
                    "seconds": result["seconds"],
                    "mb_per_s": size_mb / result["seconds"],
                    "peak_mb": result["peak_mb"],
                    "after_imports_mb": result["after_imports_mb"],
                    "peak_above_imports_mb": result["peak_mb"] - result["after_imports_mb"],
                })
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def pick(mode: str, cache: str) -> dict:
        return next(row for row in rows if row["mode"] == mode and row["page_cache"] == cache)

    for row in rows:
        row["speed_vs_raw"] = row["mb_per_s"] / pick("raw", row["page_cache"])["mb_per_s"]
    peak = max(row["peak_mb"] for row in rows if row["mode"] == "prepare")
    share = min(pick("prepare", cache)["speed_vs_raw"] for cache in ("cold", "warm"))
    goals = [
        _common.goal(f"prepare peak resident memory < {GOAL_PEAK_MB:g} MB", f"< {GOAL_PEAK_MB:g} MB", peak,
                     peak < GOAL_PEAK_MB, f"file of {size_mb:.0f} MB; whole process, imports included"),
        _common.goal(f"prepare speed >= {GOAL_SPEED_SHARE:.0%} of raw h5py read", f">= {GOAL_SPEED_SHARE}", share,
                     share >= GOAL_SPEED_SHARE, "lower of the cold and warm page-cache runs"),
    ]
    columns = [
        ("mode", "process", ""),
        ("page_cache", "page cache", ""),
        ("seconds", "seconds", ".2f"),
        ("mb_per_s", "MB/s", ".0f"),
        ("speed_vs_raw", "vs raw", ".0%"),
        ("peak_mb", "peak RSS MB", ".0f"),
        ("after_imports_mb", "RSS after imports MB", ".0f"),
    ]
    return _common.publish(
        NAME,
        args,
        title=f"preparing a {size_mb:.0f} MB .csd ({videos} videos x {frames} frames x {width} float32)",
        columns=columns,
        rows=rows,
        goals=goals,
        parameters={"videos": videos, "frames_per_video": frames, "width": width, "file_mb": size_mb,
                    "segments_per_video": SEGMENTS_PER_VIDEO, "write_s": write_s},
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gigabytes", type=float, default=2.0, help="Size of the feature file in GB (1e9 bytes).")
    parser.add_argument("--videos", type=int, default=300, help="Videos in the feature file.")
    parser.add_argument("--width", type=int, default=1024, help="Feature width (float32 columns).")
    parser.add_argument("--child", choices=("prepare", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> dict | None:
    """Run the benchmark and return the written result (a child run prints its figures instead)."""
    args = _common.parse_args(NAME, __doc__.splitlines()[0], argv, _options)
    if args.child:
        child(args.child, args.section, args.cache_dir)
        return None
    return run(args)


if __name__ == "__main__":
    main()
