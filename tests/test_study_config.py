"""StudyConfig files: sections, conflicts between fixed values and the space, the example file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.errors import ConfigError
from search.config import StudyConfig
from search.space import PACKAGED_SPACE_FILE, load_space
from tests.study_support import TINY_SPACE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sections(tiny_world) -> dict:
    return {"source": tiny_world["source"].to_dict(), "target": tiny_world["target"].to_dict()}


def test_defaults(sections, tmp_path):
    config = StudyConfig.from_dict(sections, tmp_path)

    # Without a space section the packaged default space is used.
    assert config.space == load_space(PACKAGED_SPACE_FILE)
    # The round trip through to_dict keeps the config.
    assert StudyConfig.from_dict(config.to_dict(), tmp_path).to_dict() == config.to_dict()


def test_space_file_relative_to_config(sections, tmp_path):
    (tmp_path / "narrow.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**sections, "space": "narrow.yaml"}))

    # A space file name is read from the config file's folder.
    assert set(StudyConfig.from_file(path).space.params) == {"lr", "n_clusters", "objective"}


def test_train_config_layers(sections, tmp_path):
    config = StudyConfig.from_dict({**sections, "space": TINY_SPACE, "fixed": {"dropout": 0.3}}, tmp_path)

    train = config.train_config({"lr": 0.004})
    # A trial's TrainConfig combines defaults, the space's fixed values, fixed settings and samples.
    assert train.lr == 0.004
    assert train.epochs == 4
    assert train.dropout == 0.3


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"fixd": {}}, "unknown key 'fixd'"),
        ({"fixed": {"lr": 0.01}}, "'lr' is both fixed.*and searched"),
        ({"fixed": {"epochs": 9}}, "'epochs' is fixed to 9 but the space fixes it to 4"),
        ({"fixed": {"dropout": 2.0}}, "dropout"),
        ({"fixed": [1]}, "'fixed' must be a mapping"),
        ({"pruner": {"threshold": 2}}, "threshold"),
        ({"pruner": {"patience": 2}}, "patience"),
        ({"space": 5}, "'space' must be a file name or a mapping"),
        ({"source_model": {"depth": 3}}, "depth"),
    ],
)
def test_invalid_sections(sections, tmp_path, extra, pattern):
    document = {**sections, "space": TINY_SPACE, **extra}

    # Every invalid section raises ConfigError naming the key.
    with pytest.raises(ConfigError, match=pattern):
        StudyConfig.from_dict(document, tmp_path)


def test_missing_dataset_section(sections, tmp_path):
    # Both dataset sections are required.
    with pytest.raises(ConfigError, match="section 'target' is missing"):
        StudyConfig.from_dict({"source": sections["source"]}, tmp_path)


def test_missing_config_file(tmp_path):
    # A missing file names the --config option.
    with pytest.raises(ConfigError, match="--config"):
        StudyConfig.from_file(tmp_path / "nope.yaml")


def test_example_config_loads():
    config = StudyConfig.from_file(REPO / "studies" / "demo.yaml")

    # The example study config in studies/ is valid and points into studies/demo-world.
    assert config.target.folder == (REPO / "studies" / "demo-world" / "target").resolve()
    assert config.base_train_config().epochs == 30
