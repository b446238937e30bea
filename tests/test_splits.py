"""Video-level splits: standard folds, split files, grouped splits, and no leakage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.datasets import SplitConfig
from adapters.errors import ConfigError, DataError
from adapters.splits import assign_videos, grouped_folds


def test_standard_mosi_folds():
    pytest.importorskip("mmsdk")
    videos = ["2iD-tVS8NPw", "not-a-mosi-video"]
    assignment, unassigned = assign_videos(SplitConfig(kind="standard", dataset="mosi"), videos, ".")
    assert assignment == {"2iD-tVS8NPw": "train"}
    assert unassigned == ["not-a-mosi-video"]


def test_standard_folds_need_sdk(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mmsdk.mmdatasdk", None)
    with pytest.raises(ConfigError, match=r"pip install 'adaptsearch\[sdk\]'"):
        assign_videos(SplitConfig(kind="standard", dataset="mosei"), ["a"], ".")


def test_split_file(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a", "b"], "valid": ["c"], "test": ["d", "x"]}))
    assignment, unassigned = assign_videos(SplitConfig(kind="file", path="s.json"), ["a", "b", "c", "d", "e"], tmp_path)
    assert assignment == {"a": "train", "b": "train", "c": "valid", "d": "test"}
    assert unassigned == ["e"]


def test_split_file_video_in_two_splits(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a"], "valid": ["a"], "test": []}))
    with pytest.raises(DataError, match="'a' in both train and valid"):
        assign_videos(SplitConfig(kind="file", path="s.json"), ["a"], tmp_path)


def test_split_file_needs_three_keys(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a"], "test": []}))
    with pytest.raises(DataError, match="exactly the keys train, valid, test"):
        assign_videos(SplitConfig(kind="file", path="s.json"), ["a"], tmp_path)


def test_grouped_is_seeded_and_sized():
    videos = [f"v{i}" for i in range(100)]
    first = grouped_folds(videos, 3, (0.7, 0.1, 0.2))
    assert first == grouped_folds(list(reversed(videos)), 3, (0.7, 0.1, 0.2))
    assert [len(first[s]) for s in ("train", "valid", "test")] == [70, 10, 20]
    assert first != grouped_folds(videos, 4, (0.7, 0.1, 0.2))


@pytest.mark.parametrize(("fractions", "key"), [((0.5, 0.5, 0.5), "sum to 1"), ((0.0, 0.5, 0.5), "non-zero train")])
def test_grouped_fractions_checked(fractions, key):
    with pytest.raises(ConfigError, match=key):
        SplitConfig(kind="grouped", fractions=fractions)


@settings(max_examples=50, deadline=None)
@given(
    segment_videos=st.lists(st.integers(0, 30), min_size=1, max_size=200),
    seed=st.integers(0, 1000),
)
def test_grouped_split_never_leaks_a_video(segment_videos, seed):
    videos = [f"v{i}" for i in segment_videos]
    assignment, unassigned = assign_videos(SplitConfig(kind="grouped", seed=seed), videos, ".")
    assert unassigned == []
    assert set(assignment) == set(videos)
    segment_splits = {}
    for video in videos:
        segment_splits.setdefault(video, set()).add(assignment[video])
    assert all(len(splits) == 1 for splits in segment_splits.values())
