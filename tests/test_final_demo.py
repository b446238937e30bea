"""The original failure and its fix on the default demo world (slow: about two minutes on one core).

Run with ``python -m pytest tests/test_final_demo.py -s -m slow`` to see the figures.
"""

import logging
import warnings

import pytest
import torch

from adapters.demo import write_demo_world
from adapters.final import train_and_test
from adapters.params import ORIGINAL_SETTINGS, SourceModelConfig
from adapters.pipeline import prepare_context
from adapters.trainer import train_adapters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_context(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo-default")
    configs = write_demo_world(root / "world", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        context = prepare_context(configs["source"], configs["target"], SourceModelConfig(), root / "cache")
    return context, root / "cache"


def _line(name, outcome):
    test = outcome.diagnostics["test"]
    return (
        f"{name}: valid r {outcome.valid.corr:.3f}, test r {outcome.test.corr:.3f}, test MAE {outcome.test.mae:.3f}, "
        f"test prediction std {test['predictions']['std']:.3f} (labels {test['labels']['std']:.3f}), "
        f"sign agreement {test['sign_agreement']:.3f}, warnings {len(test['warnings'])}"
    )


def test_original_fails_and_alignment_with_labels_works(demo_context, caplog):
    context, cache = demo_context

    # The original script kept the epoch of lowest training loss; there its adapters are uninformative.
    with caplog.at_level(logging.WARNING, logger="adapters.diagnostics"):
        original_own = train_adapters(
            context.source_model, context.source_data, context.target_data, ORIGINAL_SETTINGS,
            keep="min-loss", cache_dir=cache,
        )
    # The same settings under the search's selection (best validation r), as the final table shows them.
    original = train_and_test(context, ORIGINAL_SETTINGS, include_valid=False, cache_dir=cache)
    moments = train_and_test(
        context, ORIGINAL_SETTINGS.replace(objective="moments", labelled_fraction=0.05, epochs=20),
        include_valid=False, cache_dir=cache,
    )

    print()
    print(f"original settings, lowest-loss epoch {original_own.best_epoch}: valid r {original_own.metrics.corr:.3f}")
    print(_line("original settings, best valid epoch", original))
    print(_line("moments + 5% labels", moments))

    # Prototype MSE pulls every adapted row toward the prototypes, so the adapted features
    # collapse and the diagnostics flag it. At the lowest-loss epoch the correlation is low; it
    # moves between about -0.4 and 0.5 from epoch to epoch and seed to seed on this world.
    assert original_own.metrics.corr < 0.3
    assert any("adapted" in warning and "collapsed" in warning for warning in original_own.diagnostics["warnings"])
    assert any("collapsed" in message for message in caplog.messages)
    # Picking its best validation epoch helps, but its test predictions stay compressed to a
    # fraction of the labels' spread.
    original_test = original.diagnostics["test"]
    assert original_test["predictions"]["std"] < 0.3 * original_test["labels"]["std"]
    # Moment matching plus 64 labelled target rows gives a clearly positive correlation.
    assert moments.test.corr > 0.7
    assert moments.valid.corr > 0.7
    assert moments.test.corr - original.test.corr > 0.3
    assert not moments.diagnostics["test"]["collapsed"]
