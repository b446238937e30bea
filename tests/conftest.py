"""Shared fixtures: a tiny generated demo world that every test module may read."""

from __future__ import annotations

import pytest

from adapters.demo import write_demo_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """Write a tiny demo world (a few dozen segments per dataset) once per test session.

    Returns ``{"source": DatasetConfig, "target": DatasetConfig}``; the files live under a
    session temporary folder, next to ``world.yaml``. Tests must not modify them.
    """
    return write_demo_world(tmp_path_factory.mktemp("tiny-world"), size="tiny", seed=0)
