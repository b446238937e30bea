"""Malformed inputs through the command line: one red line, the right exit code, nothing changed.

Every case builds one broken input (a `.csd` file, a pickle, a config, a space file, a
``params.yaml``, a storage URL or a study name) and runs the CLI through `search.cli.main`,
the entry point users get, so the `AdaptSearchError` edge is part of what is tested. Each
case runs in a folder that already holds a finished study, its prepared caches and an
exported ``params.yaml``; after the case every one of those files must be byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import search.study
from search.cli import app, main
from tests.reliability_support import cli_command, worker_env, write_quick_config

torch.set_num_threads(1)

DATA_EXIT = 2
CONFIG_EXIT = 2
USAGE_EXIT = 2
STUDY_EXIT = 4

VISUAL = ("target/DEMO_MOSI_Visual65.csd", "Visual65")
LABELS = ("target/CMU_MOSI_Opinion_Labels.csd", "Opinion Segment Labels")
# A TCP port on loopback that nothing listens on (port 1 needs root to bind).
CLOSED_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:1/adaptsearch"


def invoke(args: list[str], capsys) -> tuple[object, str]:
    """Run ``adaptsearch ARGS`` through `search.cli.main`; return (exit code, stdout + stderr).

    An exception that escapes `main` is a bug: its traceback is put into the output so that
    the "no traceback" check below fails and shows it.
    """
    code: object = 0
    escaped = ""
    try:
        main(args)
    except SystemExit as done:
        code = 0 if done.code is None else done.code
    except BaseException:  # noqa: BLE001 - any escape is reported, with its traceback
        code = "uncaught exception"
        escaped = traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out + captured.err + escaped


def file_digests(folder: Path) -> dict[str, str]:
    """Return the BLAKE2b digest of every file under `folder`, by relative path.

    SQLite's shared-memory index (``-shm``) changes whenever a reader opens the database, and
    an empty write-ahead log is the same as none, so both are left out; a non-empty log is a
    write and is compared.
    """
    digests = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith("-shm"):
            continue
        if path.name.endswith("-wal") and path.stat().st_size == 0:
            continue
        digests[str(path.relative_to(folder))] = hashlib.blake2b(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def study_folder(tiny_world, tmp_path_factory):
    """A working folder with a finished two-trial study, its caches and an exported params.yaml.

    Cases run with this folder as the working folder, so the default storage
    ``sqlite:///studies/adaptsearch.db`` and the default ``studies/cache`` are the ones that
    must stay unchanged.
    """
    folder = tmp_path_factory.mktemp("existing-study")
    config = write_quick_config(folder / "config", tiny_world)
    # The run is a separate process, so that its exit closes every SQLite connection and
    # folds the write-ahead log into the database file before the first digest is taken.
    args = ["run", "--config", str(config), "--trials", "2", "--seed", "0"]
    done = subprocess.run(cli_command(*args), cwd=folder, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    previous = Path.cwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as exported:
            main(["best", "--export", "params.yaml"])
    finally:
        os.chdir(previous)
    assert exported.value.code in (0, None)
    assert (folder / "studies" / "adaptsearch.db").is_file()
    assert list((folder / "studies" / "cache").rglob("*.h5"))
    return folder


# --- builders of broken inputs ---------------------------------------------------------------
# Each takes (case folder, study folder) and returns the CLI arguments of the case.


def copy_world(tmp: Path, world_dir: Path) -> Path:
    """Copy the tiny world into `tmp` and return the copy's world.yaml."""
    shutil.copytree(world_dir, tmp / "world")
    return tmp / "world" / "world.yaml"


def edit_video(file_and_root: tuple[str, str], video: str, *, features=None, intervals=None):
    """Return an editor that replaces one video's features and/or intervals in a world copy."""

    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            group = handle[root]["data"][video]
            for key, values in (("features", features), ("intervals", intervals)):
                if values is None:
                    continue
                data = values(group[key][()]) if callable(values) else values
                del group[key]
                group.create_dataset(key, data=data)

    return edit


def edit_world_yaml(**target_changes):
    """Return an editor that changes keys of the target section of world.yaml."""

    def edit(world: Path) -> None:
        path = world / "world.yaml"
        document = yaml.safe_load(path.read_text())
        document["target"].update(target_changes)
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    return edit


def rewrite_file(relative: str, content: bytes):
    def edit(world: Path) -> None:
        (world / relative).write_bytes(content)

    return edit


def rename_all_videos(file_and_root: tuple[str, str], prefix: str):
    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            data = handle[root]["data"]
            for video in list(data):
                data.move(video, prefix + video)

    return edit


def remove_all_videos(file_and_root: tuple[str, str]):
    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            data = handle[root]["data"]
            for video in list(data):
                del data[video]

    return edit


def empty_every_video(file_and_root: tuple[str, str]):
    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            data = handle[root]["data"]
            for video in list(data):
                width = data[video]["features"].shape[1]
                del data[video]["features"], data[video]["intervals"]
                data[video].create_dataset("features", data=np.zeros((0, width), np.float32))
                data[video].create_dataset("intervals", data=np.zeros((0, 2), np.float32))

    return edit


def drop_data_group(file_and_root: tuple[str, str]):
    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            del handle[root]["data"]

    return edit


def rename_root(file_and_root: tuple[str, str], new_root: str):
    def edit(world: Path) -> None:
        name, root = file_and_root
        with h5py.File(world / name, "r+") as handle:
            handle.move(root, new_root)

    return edit


def inspect_world(*edits: Callable[[Path], None]):
    """Return a builder: copy the world, apply `edits`, then ``data inspect`` it into the cache."""

    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        world_yaml = copy_world(tmp, world_dir)
        for edit in edits:
            edit(world_yaml.parent)
        return ["data", "inspect", str(world_yaml), "--cache-dir", "studies/cache"]

    return build


def pickle_dataset(document_factory: Callable[[], object], *, raw: bytes | None = None):
    """Return a builder that writes a pickle dataset and inspects it."""

    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        payload = raw if raw is not None else pickle.dumps(document_factory(), protocol=2)
        (tmp / "data.pkl").write_bytes(payload)
        section = {
            "name": "pickled",
            "format": "mmsa-pickle",
            "folder": str(tmp),
            "modalities": {"visual": "", "audio": "", "text": ""},
            "pickle": "data.pkl",
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(section))
        return ["data", "inspect", str(tmp / "dataset.yaml"), "--cache-dir", "studies/cache"]

    return build


def pickle_split(n: int, *, steps: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {
        "vision": rng.normal(size=(n, steps, 4)).astype(np.float32),
        "audio": rng.normal(size=(n, steps, 3)).astype(np.float32),
        "text": rng.normal(size=(n, steps, 5)).astype(np.float32),
        "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
        "id": np.array([f"v{i}[0]" for i in range(n)], dtype=object),
    }


class _RunsShell:
    """Unpickling this object would call os.system; the restricted unpickler must reject it."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def study_config(mutate: Callable[[dict], None], *, extra: list[str] = ()):
    """Return a builder that writes a quick study config changed by `mutate`, then runs it."""

    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        path = study / "config" / "study.yaml"
        document = yaml.safe_load(path.read_text())
        mutate(document)
        broken = tmp / "study.yaml"
        broken.write_text(yaml.safe_dump(document, sort_keys=False))
        return ["run", "--config", str(broken), "--trials", "3", *extra]

    return build


def space_entry(name: str, entry: object):
    """Return a builder that runs the quick config with a ``--space`` file holding one bad entry."""

    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        space = {"parameters": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}, name: entry}}
        (tmp / "space.yaml").write_text(yaml.safe_dump(space))
        return ["run", "--config", str(study / "config" / "study.yaml"), "--space", str(tmp / "space.yaml")]

    return build


def params_file(mutate: Callable[[dict], None]):
    """Return a builder that trains from the study's params.yaml changed by `mutate`."""

    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        document = yaml.safe_load((study / "params.yaml").read_text())
        mutate(document)
        (tmp / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        return ["train", "--params", str(tmp / "params.yaml"), "--out", str(tmp / "runs")]

    return build


def broken_params_file(tmp: Path, study: Path, world_dir: Path) -> list[str]:
    """Train from a copy of the study's params.yaml whose first line lost its closing bracket."""
    (tmp / "params.yaml").write_text("train: [unclosed\n" + (study / "params.yaml").read_text())
    return ["train", "--params", str(tmp / "params.yaml"), "--out", str(tmp / "runs")]


def fixed_args(*args: str):
    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        return [arg.replace("{tmp}", str(tmp)) for arg in args]

    return build


def set_path(path: tuple, value):
    def mutate(document: dict) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def delete_key(*path: str):
    def mutate(document: dict) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def broken_cache_file(tmp: Path, study: Path, world_dir: Path) -> list[str]:
    (tmp / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return ["data", "inspect", str(tmp / "broken.h5")]


def incomplete_cache_file(tmp: Path, study: Path, world_dir: Path) -> list[str]:
    cached = sorted((study / "studies" / "cache").glob("demo-mosi-*.h5"))[0]
    shutil.copy(cached, tmp / "incomplete.h5")
    with h5py.File(tmp / "incomplete.h5", "r+") as handle:
        del handle["splits/valid"]
    return ["data", "inspect", str(tmp / "incomplete.h5")]


def good_config_with_storage(storage: str):
    def build(tmp: Path, study: Path, world_dir: Path) -> list[str]:
        return ["run", "--config", str(study / "config" / "study.yaml"), "--trials", "3", "--storage", storage]

    return build


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path, Path], list[str]]
    code: int
    pattern: str
    usage: bool = False


def _video_rows(values: np.ndarray) -> np.ndarray:
    return values[:-1]


CASES = [
    # .csd files
    Case("csd not hdf5", inspect_world(rewrite_file(VISUAL[0], b"this is not HDF5\n" * 4)), DATA_EXIT,
         r"DEMO_MOSI_Visual65\.csd: not a readable HDF5 \(\.csd\) file"),
    Case("csd empty file", inspect_world(rewrite_file(VISUAL[0], b"")), DATA_EXIT,
         r"DEMO_MOSI_Visual65\.csd: file is empty"),
    Case("csd missing file", inspect_world(lambda world: (world / VISUAL[0]).unlink()), DATA_EXIT,
         r"DEMO_MOSI_Visual65\.csd: file not found"),
    Case("csd no data group", inspect_world(drop_data_group(VISUAL)), DATA_EXIT,
         r"group /Visual65 has no 'data' group"),
    Case("csd root group renamed", inspect_world(rename_root(VISUAL, "Other")), DATA_EXIT,
         r"root group 'Visual65' not found; the file holds Other"),
    Case("csd features 1-D", inspect_world(edit_video(VISUAL, "mosi0001", features=lambda f: f[:, 0])), DATA_EXIT,
         r"video 'mosi0001' has features of shape \(\d+,\), expected 2-D"),
    Case("csd interval rows differ",
         inspect_world(edit_video(VISUAL, "mosi0002", intervals=_video_rows)), DATA_EXIT,
         r"video 'mosi0002' has \d+ feature rows but \d+ interval rows"),
    Case("csd NaN interval",
         inspect_world(edit_video(VISUAL, "mosi0003", intervals=lambda i: np.where(np.arange(len(i))[:, None] == 2, np.nan, i))),
         DATA_EXIT, r"video 'mosi0003' has a non-finite interval at row 2"),
    Case("csd reversed interval",
         inspect_world(edit_video(VISUAL, "mosi0000", intervals=lambda i: np.concatenate([i[:1, ::-1] + [[1.0, 0.0]], i[1:]]))),
         DATA_EXIT, r"video 'mosi0000' has a reversed interval at row 0"),
    Case("csd widths differ", inspect_world(edit_video(VISUAL, "mosi0004", features=lambda f: f[:, :10])), DATA_EXIT,
         r"videos have different feature widths: 10 \(video 'mosi0004'\), 65"),
    Case("csd every video empty", inspect_world(empty_every_video(VISUAL)), DATA_EXIT,
         r"dataset demo-mosi: no train segment is left"),
    Case("csd label column out of range", inspect_world(edit_world_yaml(label_column=3)), DATA_EXIT,
         r"has 1 label columns, so label_column 3 does not exist; set label_column to 0\.\.0"),
    Case("csd label outside range",
         inspect_world(edit_video(LABELS, "mosi0001", features=lambda f: f * 0 + 7.5)), DATA_EXIT,
         r"video 'mosi0001' row 0 has sentiment 7\.5 outside \[-3, 3\]"),
    Case("csd ids match nothing", inspect_world(rename_all_videos(VISUAL, "other-")), DATA_EXIT,
         r"DEMO_MOSI_Visual65\.csd: none of the 8 labelled videos is in this visual file "
         r"\(labels name e\.g\. 'mosi0000', the file holds e\.g\. 'other-mosi0000'\)"),
    Case("csd label file without videos", inspect_world(remove_all_videos(LABELS)), DATA_EXIT,
         r"CMU_MOSI_Opinion_Labels\.csd: the label file contains no videos"),
    Case("split file not json", inspect_world(rewrite_file("target/splits.json", b"{train: [")), DATA_EXIT,
         r"split file .*splits\.json is not valid JSON"),
    Case("split file video twice",
         inspect_world(rewrite_file("target/splits.json", b'{"train": ["mosi0000"], "valid": ["mosi0000"], "test": []}')),
         DATA_EXIT, r"puts video 'mosi0000' in both train and valid"),
    Case("dataset unknown key", inspect_world(edit_world_yaml(pooling_kind="mean")), CONFIG_EXIT,
         r"world\.yaml: dataset section 'target': unknown key 'pooling_kind'"),
    Case("dataset bad pooling", inspect_world(edit_world_yaml(pooling="median")), CONFIG_EXIT,
         r"pooling must be one of mean, mean\+std, got 'median'"),
    Case("dataset yaml invalid", inspect_world(rewrite_file("world.yaml", b"source: [unclosed\n")), CONFIG_EXIT,
         r"world\.yaml is not valid YAML: expected ',' or '\]', but got '<stream end>' at line 2, column 1$"),
    Case("prepared cache corrupt", broken_cache_file, DATA_EXIT, r"prepared file .*broken\.h5 is not readable HDF5"),
    Case("prepared cache incomplete", incomplete_cache_file, DATA_EXIT,
         r"prepared file .*incomplete\.h5 is incomplete .*; delete it and prepare again"),
    Case("dataset yaml is a folder", fixed_args("data", "inspect", "{tmp}"), CONFIG_EXIT,
         r"is a folder; pass a dataset YAML file"),
    Case("dataset yaml not utf-8", inspect_world(rewrite_file("world.yaml", b"\xff\xfe\x00 binary")), CONFIG_EXIT,
         r"cannot read dataset file .*world\.yaml: it is not UTF-8 text"),
    Case("cache folder is a file",
         lambda tmp, study, world: inspect_world()(tmp, study, world)[:-1] + ["params.yaml"],
         DATA_EXIT, r"cannot create the cache folder params\.yaml: a file of that name exists"),
    Case("demo folder is a file", fixed_args("data", "demo", "params.yaml", "--size", "tiny"), DATA_EXIT,
         r"cannot create the demo folder params\.yaml: a file of that name exists"),
    # pickles
    Case("pickle runs code", pickle_dataset(lambda: {"train": _RunsShell()}), DATA_EXIT,
         r"pickle refers to the global (posix|os|nt)\.system.*could run code"),
    Case("pickle missing split", pickle_dataset(lambda: {"train": pickle_split(4), "valid": pickle_split(2)}), DATA_EXIT,
         r"split\(s\) test missing"),
    Case("pickle length mismatch",
         pickle_dataset(lambda: {"train": {**pickle_split(4), "audio": np.zeros((3, 3, 3), np.float32)},
                                 "valid": pickle_split(2), "test": pickle_split(2)}),
         DATA_EXIT, r"split 'train' array 'audio' has shape \(3, 3, 3\), expected \(4, T, d\)"),
    Case("pickle not a pickle", pickle_dataset(lambda: None, raw=b"plain text, not a pickle"), DATA_EXIT,
         r"data\.pkl: not a readable pickle"),
    # study configs
    Case("config unknown key", study_config(set_path(("sampler",), "tpe")), CONFIG_EXIT,
         r"study config: unknown key 'sampler'"),
    Case("config missing source", study_config(delete_key("source")), CONFIG_EXIT,
         r"study config: section 'source' is missing"),
    Case("config fixed wrong type", study_config(set_path(("fixed",), {"batch_size": "big"})), CONFIG_EXIT,
         r"batch_size must be an integer .*got 'big'"),
    Case("config fixed unknown key", study_config(set_path(("fixed",), {"learning_rate": 0.1})), CONFIG_EXIT,
         r"unknown train key 'learning_rate'"),
    Case("config source model unknown key", study_config(set_path(("source_model", "layers"), 3)), CONFIG_EXIT,
         r"unknown source_model key 'layers'"),
    Case("config not found", fixed_args("run", "--config", "{tmp}/missing.yaml"), CONFIG_EXIT,
         r"study config .*missing\.yaml not found"),
    Case("config is a folder", fixed_args("run", "--config", "{tmp}"), CONFIG_EXIT,
         r"study config .* is a folder; pass a YAML file to --config"),
    Case("config yaml invalid", lambda tmp, study, world: (tmp / "study.yaml").write_text("source: [unclosed\n")
         and ["run", "--config", str(tmp / "study.yaml")], CONFIG_EXIT,
         r"study\.yaml is not valid YAML: expected ',' or '\]', but got '<stream end>' at line 2, column 1$"),
    Case("studies dir is a file",
         lambda tmp, study, world: ["run", "--config", str(study / "config" / "study.yaml"), "--studies-dir", "params.yaml"],
         DATA_EXIT, r"cannot create the folder params\.yaml for .*: params\.yaml is a file, not a folder"),
    # search-space files
    Case("space is a folder",
         lambda tmp, study, world: ["run", "--config", str(study / "config" / "study.yaml"), "--space", str(tmp)],
         CONFIG_EXIT, r"search space file .* is a folder; pass a YAML file"),
    Case("space yaml invalid",
         lambda tmp, study, world: (tmp / "space.yaml").write_text("parameters: {lr: [1\n")
         and ["run", "--config", str(study / "config" / "study.yaml"), "--space", str(tmp / "space.yaml")],
         CONFIG_EXIT, r"space\.yaml is not valid YAML: .* at line \d+, column \d+$"),
    Case("space low above high", space_entry("dropout", {"type": "float", "low": 0.5, "high": 0.1}), CONFIG_EXIT,
         r"parameter 'dropout': 'low' must be <= 'high', got low=0\.5, high=0\.1"),
    Case("space log range at 0", space_entry("weight_decay", {"type": "float", "low": 0.0, "high": 0.1, "log": True}),
         CONFIG_EXIT, r"parameter 'weight_decay': a log range must lie above 0, got low=0\.0"),
    Case("space empty categorical", space_entry("norm", {"type": "categorical", "choices": []}), CONFIG_EXIT,
         r"parameter 'norm': 'choices' must be a non-empty list"),
    Case("space unknown parameter", space_entry("momentum", {"type": "float", "low": 0.1, "high": 0.9}), CONFIG_EXIT,
         r"unknown parameter 'momentum'"),
    Case("space wrong type", space_entry("hidden", {"type": "int", "low": 8.5, "high": 64}), CONFIG_EXIT,
         r"parameter 'hidden': 'low' must be an integer, got 8\.5"),
    Case("space unknown entry key", space_entry("depth", {"type": "int", "low": 1, "high": 3, "scale": "log"}),
         CONFIG_EXIT, r"parameter 'depth': unknown key 'scale'"),
    # params.yaml
    Case("params unknown key", params_file(set_path(("train", "learning_rate"), 0.1)), CONFIG_EXIT,
         r"unknown train key 'learning_rate'"),
    Case("params wrong type", params_file(set_path(("train", "epochs"), "many")), CONFIG_EXIT,
         r"train\.epochs must be an integer in \[1, 10000\], got 'many'"),
    Case("params out of range", params_file(set_path(("train", "dropout"), 1.5)), CONFIG_EXIT,
         r"train\.dropout must be a number in \[0\.0, 1\.0\), got 1\.5"),
    Case("params missing target", params_file(delete_key("target")), CONFIG_EXIT,
         r"params key 'target' is missing"),
    Case("params yaml invalid", broken_params_file, CONFIG_EXIT,
         r"parameter file .*params\.yaml is not valid YAML: .* at line \d+, column \d+$"),
    Case("params not found", fixed_args("train", "--params", "{tmp}/none.yaml"), CONFIG_EXIT,
         r"parameter file .*none\.yaml not found"),
    Case("train out folder not creatable",
         fixed_args("train", "--params", "params.yaml", "--out", "/proc/nope/run", "--studies", "{tmp}/studies",
                    "--no-compare-original"),
         DATA_EXIT, r"cannot create the folder /proc/nope for /proc/nope/run: "),
    # storage URLs and study names
    Case("run unsupported scheme", good_config_with_storage("ftp://127.0.0.1/studies"), STUDY_EXIT,
         r"unsupported scheme 'ftp'"),
    Case("run unreachable postgres", good_config_with_storage(CLOSED_POSTGRES), STUDY_EXIT,
         r"cannot open storage .*127\.0\.0\.1:1.*database server is running"),
    Case("best unreachable postgres", fixed_args("best", "--storage", CLOSED_POSTGRES), STUDY_EXIT,
         r"cannot open storage .*database server is running"),
    Case("best sqlite missing folder", fixed_args("best", "--storage", "sqlite:///{tmp}/no/such/folder/a.db"),
         STUDY_EXIT, r"study database .*no/such/folder/a\.db not found"),
    Case("run sqlite folder not creatable", good_config_with_storage("sqlite:////proc/nope/a.db"), STUDY_EXIT,
         r"cannot create the folder /proc/nope of study database /proc/nope/a\.db: "),
    Case("run sqlite names a folder", lambda tmp, study, world: good_config_with_storage(f"sqlite:///{tmp}")(tmp, study, world),
         STUDY_EXIT, r"names the folder .*, not a database file; name a file in it"),
    Case("run mysql driver missing", good_config_with_storage("mysql+pymysql://user@127.0.0.1:1/db"), STUDY_EXIT,
         r"the database driver pymysql is missing .*pip install PyMySQL"),
    Case("best trial without export", fixed_args("best", "--trial", "999"), CONFIG_EXIT,
         r"--trial 999 chooses the trial to export and needs --export"),
    Case("best export folder not creatable", fixed_args("best", "--export", "/proc/nope/p.yaml"), DATA_EXIT,
         r"cannot create the folder /proc/nope for /proc/nope/p\.yaml: "),
    Case("best unknown study", fixed_args("best", "--study", "nosuch"), STUDY_EXIT,
         r"study 'nosuch' not found in sqlite:///studies/adaptsearch\.db \(stored studies: adaptsearch\)"),
    Case("best export exists", fixed_args("best", "--export", "params.yaml"), CONFIG_EXIT,
         r"params\.yaml already exists; pass --force"),
    Case("dashboard unknown study", fixed_args("dashboard", "--study", "nosuch", "--port", "1"), STUDY_EXIT,
         r"study 'nosuch' not found"),
    Case("dashboard sqlite missing folder", fixed_args("dashboard", "--storage", "sqlite:///{tmp}/none/a.db"),
         STUDY_EXIT, r"study database .*none/a\.db not found"),
    # output paths that are files
    Case("report out is a file", fixed_args("report", "--out", "params.yaml"), DATA_EXIT,
         r"cannot use .*params\.yaml: .*check the paths"),
    Case("best adapters under a file",
         fixed_args("best", "--export", "{tmp}/exported.yaml", "--adapters", "params.yaml/adapters.pt"), DATA_EXIT,
         r"cannot create the folder params\.yaml for params\.yaml/adapters\.pt"),
    Case("run studies dir is a file",
         lambda tmp, study, world: good_config_with_storage(f"sqlite:///{tmp}/other.db")(tmp, study, world)
         + ["--studies-dir", "params.yaml"],
         DATA_EXIT, r"cannot create the folder params\.yaml .*params\.yaml is a file, not a folder"),
    Case("run artifacts is a file",
         lambda tmp, study, world: good_config_with_storage(f"sqlite:///{tmp}/other.db")(tmp, study, world)
         + ["--artifacts", "params.yaml", "--studies-dir", str(tmp / "studies")],
         DATA_EXIT, r"cannot use .*params\.yaml.*: .*check the paths"),
    # options
    Case("run zero trials", fixed_args("run", "--trials", "0"), USAGE_EXIT, r"Invalid value for '--trials'",
         usage=True),
    Case("run jobs on memory storage",
         lambda tmp, study, world: ["run", "--config", str(study / "config" / "study.yaml"), "--jobs", "2",
                                    "--storage", "memory", "--studies-dir", str(tmp / "studies")],
         CONFIG_EXIT, r"jobs > 1 needs a database storage"),
]


def _train_registered() -> bool:
    return any(command.name == "train" for command in app.registered_commands)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, study_folder, tiny_world, tmp_path, capsys, monkeypatch):
    args = case.build(tmp_path, study_folder, tiny_world["target"].folder.parent)
    if args[0] == "train" and not _train_registered():
        pytest.skip("the train command is not registered yet")
    monkeypatch.chdir(study_folder)
    before = file_digests(study_folder)

    code, output = invoke(args, capsys)

    # The command exits with the error family's code and never shows a traceback.
    assert "Traceback" not in output, output
    assert code == case.code, output
    # The message is one line that names the fault.
    if case.usage:
        # Typer reports option errors itself, in a usage box.
        assert re.search(case.pattern, output), output
    else:
        error_lines = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, output
        assert re.search(case.pattern, error_lines[0]), error_lines[0]
    # The study, its caches, the space copy and the exported parameters are unchanged.
    assert file_digests(study_folder) == before


def test_case_count():
    # The corpus covers at least thirty malformed inputs, each with its own name.
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)


def test_bad_adapters_path_writes_no_export(study_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(study_folder)
    export = tmp_path / "exported.yaml"

    code, output = invoke(["best", "--export", str(export), "--adapters", "params.yaml/adapters.pt"], capsys)

    assert code == DATA_EXIT, output
    # The adapters path is checked first, so the failed command leaves no export to --force over.
    assert not export.exists()


def test_corrupt_database_creates_nothing(study_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(study_folder)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "bad.db").write_bytes(b"not a database " * 300)
    before = file_digests(folder)

    def no_preparation(*args, **kwargs):
        raise AssertionError("data was prepared for a storage that cannot be opened")

    monkeypatch.setattr(search.study, "_make_objective", no_preparation)
    code, output = invoke(good_config_with_storage(f"sqlite:///{folder / 'bad.db'}")(tmp_path, study_folder, tmp_path), capsys)

    assert code == STUDY_EXIT, output
    assert re.search(r"^error: cannot open storage .*bad\.db: .*file is not a database", output, re.MULTILINE), output
    # No lock file, no artifact folder beside the file, and the file itself untouched.
    assert file_digests(folder) == before
    assert sorted(path.name for path in folder.iterdir()) == ["bad.db"]


def test_existing_export_fails_before_table(study_folder, capsys, monkeypatch):
    monkeypatch.chdir(study_folder)

    code, output = invoke(["best", "--export", "params.yaml"], capsys)

    assert code == CONFIG_EXIT, output
    # The error is the only output: the table of best trials is not printed first.
    assert "best trials" not in output
    assert output.strip().startswith("error: params.yaml already exists")
