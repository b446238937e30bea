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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    The caller writes the whole file (or folder) at the yielded path. If the block raises,
    the temporary is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", suffix=suffix, dir=target.parent)
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
