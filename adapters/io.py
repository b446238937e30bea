"""Atomic file output: write to a temporary name in the same folder, then rename.

A process killed mid-write leaves at most a stray ``.tmp-*`` file, never a truncated file
under the final name that a later command would trust.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from adapters.errors import DataError


def make_parent_folder(target: str | os.PathLike[str]) -> Path:
    """Create the folder of `target` if missing and return it.

    Raises
    ------
    DataError
        If the folder cannot be created; the message names the path and the reason.
    """
    target = Path(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the folder {folder} for {target}: {os_error_reason(folder, error)}; "
            "pass a path in a writable folder"
        ) from None
    return folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    The caller writes the whole file (or folder) at the yielded path. If the block raises,
    the temporary is removed and `target` is left as it was.

    Raises
    ------
    DataError
        If the folder of `target` cannot be created or written to; the message names the
        path and the reason.
    """
    target = Path(target)
    folder = make_parent_folder(target)
    try:
        handle, name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", suffix=suffix, dir=folder)
    except OSError as error:
        raise DataError(
            f"cannot write {target}: {error.strerror or error}; pass a path in a writable folder"
        ) from None
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()
    try:
        yield temporary
        if temporary.is_file():
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        if target.is_dir() and temporary.is_dir():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, old)
            os.replace(temporary, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `target` (UTF-8) so that readers see the old file or the whole new one."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` so that readers see the old file or the whole new one."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def os_error_reason(path: Path, error: OSError) -> str:
    """Return why the folder `path` could not be created: a file in the way, or the OS error text."""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a folder"
            break
    return error.strerror or str(error)
