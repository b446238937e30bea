import logging

import pytest
import torch

from adapters.errors import ModelError
from adapters.source import SourceModel, SourceModelConfig, _corr_text, load_or_train_source
from synthetic_train import SOURCE_WIDTHS, make_pair

MODALITIES = ("visual", "audio", "text")
FAST = SourceModelConfig(hidden=16, fusion_hidden=16, epochs=15, patience=3)


@pytest.fixture(scope="module")
def source():
    torch.set_num_threads(1)
    return make_pair()[0]


def test_source_trained_once_then_cached(source, tmp_path):
    model, info = load_or_train_source(FAST, source, tmp_path, MODALITIES)
    again, info_again = load_or_train_source(FAST, source, tmp_path, MODALITIES)

    assert info["trained"] is True
    assert info_again["trained"] is False
    assert info["test"]["corr"] > 0.8
    assert info_again["test"] == info["test"]
    features = {m: torch.from_numpy(source.splits["test"].features[m]) for m in MODALITIES}
    assert torch.equal(model(features), again(features))
    assert not list((tmp_path / "source").glob(".tmp-*"))


def test_source_log_rounds_test_metrics(source, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="adapters.source"):
        _, info = load_or_train_source(FAST, source, tmp_path, MODALITIES)

    messages = [record.getMessage() for record in caplog.records]
    lines = [message for message in messages if message.startswith("source model:")]
    assert len(lines) == 1
    # Pearson r is written to 3 decimals like the MAE, not with every digit of the float.
    assert f"test r={info['test']['corr']:.3f} MAE={info['test']['mae']:.3f}" in lines[0]


def test_source_log_undefined_correlation():
    metrics = {"corr": None, "corr_reason": "constant predictions"}

    assert _corr_text(metrics) == "undefined (constant predictions)"


def test_source_cache_key_changes_with_config_and_modalities(source, tmp_path):
    load_or_train_source(FAST, source, tmp_path, MODALITIES)

    _, other_config = load_or_train_source(SourceModelConfig(hidden=8, fusion_hidden=8, epochs=2), source, tmp_path, MODALITIES)
    _, other_modalities = load_or_train_source(FAST, source, tmp_path, ("text",))

    assert other_config["trained"] is True
    assert other_modalities["trained"] is True


def test_source_model_is_frozen(source, tmp_path):
    model, _ = load_or_train_source(FAST, source, tmp_path, MODALITIES)
    model.train()

    assert not model.training
    assert all(not parameter.requires_grad for parameter in model.parameters())
    inputs = {m: torch.randn(3, SOURCE_WIDTHS[m], requires_grad=True) for m in MODALITIES}
    model(inputs).sum().backward()
    # Gradients reach the inputs (the adapters learn through them), never the weights.
    assert inputs["text"].grad is not None
    assert all(parameter.grad is None for parameter in model.parameters())
    # Eval mode makes repeated calls identical, so dropout is off.
    assert torch.equal(model(inputs), model(inputs))


class _Positional(torch.nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.visual = torch.nn.Linear(widths[0], 1)
        self.audio = torch.nn.Linear(widths[1], 1)
        self.text = torch.nn.Linear(widths[2], 1)

    def forward(self, visual, audio, text):
        return self.visual(visual) + self.audio(audio) + self.text(text)


def _script(path, widths):
    torch.jit.script(_Positional(widths)).save(str(path))
    return SourceModelConfig(torchscript=path)


def test_torchscript_model_used_positionally(source, tmp_path):
    config = _script(tmp_path / "model.pt", [SOURCE_WIDTHS[m] for m in MODALITIES])

    model, info = load_or_train_source(config, source, tmp_path, MODALITIES)

    assert info["trained"] is False
    assert model({m: torch.zeros(4, SOURCE_WIDTHS[m]) for m in MODALITIES}).shape == (4,)
    assert not (tmp_path / "source").exists()


def test_torchscript_width_mismatch_names_modality(source, tmp_path):
    config = _script(tmp_path / "model.pt", [SOURCE_WIDTHS["visual"], 29, SOURCE_WIDTHS["text"]])

    with pytest.raises(ModelError) as caught:
        load_or_train_source(config, source, tmp_path, MODALITIES)

    message = str(caught.value)
    assert "audio" in message
    assert "29" in message
    assert str(SOURCE_WIDTHS["audio"]) in message


def test_torchscript_missing_file(source, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_or_train_source(SourceModelConfig(torchscript=tmp_path / "nope.pt"), source, tmp_path, MODALITIES)


def test_source_missing_modality(source, tmp_path):
    source.widths.pop("audio")
    try:
        with pytest.raises(ModelError, match="audio"):
            load_or_train_source(FAST, source, tmp_path, MODALITIES)
    finally:
        source.widths["audio"] = SOURCE_WIDTHS["audio"]


def test_source_model_wraps_module():
    class Sum(torch.nn.Module):
        def forward(self, features):
            return features["text"].sum(dim=1, keepdim=True)

    model = SourceModel(Sum(), ("text",), {"text": 2}, scripted=False)

    assert model({"text": torch.ones(3, 2)}).tolist() == [2.0, 2.0, 2.0]
