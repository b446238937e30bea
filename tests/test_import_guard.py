"""The import name `adapters` is shared with an unrelated PyPI package: a clash must fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import(module: str, *path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(entry) for entry in path)}
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env, cwd=path[0], timeout=60
    )


def test_foreign_distribution_rejected(tmp_path):
    site = tmp_path / "site"
    metadata = site / "adapters-1.2.0.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: adapters\nVersion: 1.2.0\n", encoding="utf-8")

    result = _import("adapters", REPO, site)

    # adaptsearch's own package is found first, and it refuses to load beside the other distribution.
    assert result.returncode != 0
    assert "the PyPI package 'adapters' 1.2.0 is installed" in result.stderr
    assert "pip uninstall adapters" in result.stderr


def test_foreign_module_rejected_by_search(tmp_path):
    site = tmp_path / "site"
    (site / "adapters").mkdir(parents=True)
    (site / "adapters" / "__init__.py").write_text("# an unrelated package of the same name\n", encoding="utf-8")
    # search/ is linked beside the foreign module, so the foreign `adapters` is the one imported.
    (site / "search").symlink_to(REPO / "search")

    result = _import("search", site)

    assert result.returncode != 0
    assert "is not adaptsearch's training library" in result.stderr


def test_own_package_imports(tmp_path):
    result = _import("search", REPO)

    assert result.returncode == 0, result.stderr
