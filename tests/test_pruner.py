"""NegativeCorrelationPruner through study.ask / trial.report / should_prune / tell, no training."""

import math

import optuna
import pytest

from adapters.errors import ConfigError
from search.pruner import PRUNED_REASON_ATTR, PRUNED_RULE_ATTR, NegativeCorrelationPruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(pruner: NegativeCorrelationPruner) -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=pruner)


def _complete(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    for epoch, value in enumerate(curve):
        trial.report(value, epoch)
    study.tell(trial, max(curve))


def _report_until_pruned(study: optuna.Study, curve: list[float]) -> tuple[optuna.Trial, int | None]:
    """Report `curve` epoch by epoch; return the trial and the epoch where it was pruned."""
    trial = study.ask()
    for epoch, value in enumerate(curve):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return trial, epoch
    study.tell(trial, max(curve))
    return trial, None


THRESHOLD_CASES = [
    # (curve, threshold, warmup, epoch at which the trial is pruned or None)
    pytest.param([-0.5] * 10, 0.0, 5, 5, id="negative-throughout"),
    pytest.param([-0.5] * 4, 0.0, 5, None, id="ends-inside-warmup"),
    pytest.param([-0.3, -0.2, -0.1, 0.0, 0.05, 0.1, 0.2], 0.0, 3, None, id="recovers-by-warmup"),
    pytest.param([0.2, 0.2, 0.2, -0.1, -0.2], 0.0, 2, 3, id="turns-negative-later"),
    pytest.param([0.1] * 8, 0.3, 2, 2, id="positive-below-threshold"),
    pytest.param([-1.0] * 6, 0.0, 0, 0, id="degenerate-no-warmup"),
    pytest.param([0.4, math.nan, 0.4], 0.0, 0, 1, id="nan-fails"),
]


@pytest.mark.parametrize(("curve", "threshold", "warmup", "expected_epoch"), THRESHOLD_CASES)
def test_threshold_rule(curve, threshold, warmup, expected_epoch):
    # Median pruning is switched off (it needs 1000 complete trials) to isolate the threshold rule.
    pruner = NegativeCorrelationPruner(threshold=threshold, warmup_epochs=warmup, median_startup_trials=1000)
    study = _study(pruner)

    trial, pruned_at = _report_until_pruned(study, curve)

    # A trial is pruned at the first epoch >= warm-up whose latest value is below the threshold.
    assert pruned_at == expected_epoch
    frozen = study.trials[trial.number]
    if expected_epoch is None:
        # A trial that is never pruned carries no pruning attributes.
        assert PRUNED_RULE_ATTR not in frozen.user_attrs
    else:
        # A pruned trial records which rule pruned it and why.
        assert frozen.user_attrs[PRUNED_RULE_ATTR] == "threshold"
        assert f"epoch {expected_epoch}" in frozen.user_attrs[PRUNED_REASON_ATTR]


MEDIAN_CASES = [
    # (complete curves before, curve of the new trial, startup, median warm-up, expected prune epoch)
    pytest.param([[0.5] * 6] * 3, [0.1] * 6, 3, 2, 2, id="below-median-after-warmup"),
    pytest.param([[0.5] * 6] * 3, [0.6] * 6, 3, 2, None, id="above-median"),
    pytest.param([[0.5] * 6] * 2, [0.1] * 6, 3, 2, None, id="too-few-complete-trials"),
    pytest.param([[0.5] * 6] * 3, [0.1] * 3, 3, 4, None, id="ends-inside-median-warmup"),
    pytest.param([[0.1, 0.2, 0.3, 0.4]] * 3, [0.35, 0.1, 0.1, 0.1], 3, 1, 3, id="best-so-far-compared"),
]


@pytest.mark.parametrize(("earlier", "curve", "startup", "median_warmup", "expected_epoch"), MEDIAN_CASES)
def test_median_rule(earlier, curve, startup, median_warmup, expected_epoch):
    # The threshold is -1 so that only the median rule can prune positive curves.
    pruner = NegativeCorrelationPruner(
        threshold=-1.0, warmup_epochs=0, median_startup_trials=startup, median_warmup_epochs=median_warmup
    )
    study = _study(pruner)
    for previous in earlier:
        _complete(study, previous)

    trial, pruned_at = _report_until_pruned(study, curve)

    # The median rule prunes once enough trials are complete, after its warm-up, when the
    # trial's best value so far is below the median of complete trials at that epoch.
    assert pruned_at == expected_epoch
    if expected_epoch is not None:
        # The reason names the median rule.
        assert study.trials[trial.number].user_attrs[PRUNED_RULE_ATTR] == "median"


def test_threshold_checked_before_median():
    pruner = NegativeCorrelationPruner(threshold=0.0, warmup_epochs=1, median_startup_trials=1, median_warmup_epochs=1)
    study = _study(pruner)
    _complete(study, [0.5, 0.5, 0.5])

    trial, pruned_at = _report_until_pruned(study, [-0.2, -0.2, -0.2])

    # Both rules apply at epoch 1; the threshold rule is reported because it is checked first.
    assert pruned_at == 1
    assert study.trials[trial.number].user_attrs[PRUNED_RULE_ATTR] == "threshold"


def test_pruned_trials_do_not_count_for_median():
    pruner = NegativeCorrelationPruner(threshold=0.0, warmup_epochs=0, median_startup_trials=1, median_warmup_epochs=0)
    study = _study(pruner)
    _report_until_pruned(study, [-0.5, -0.5])

    trial, pruned_at = _report_until_pruned(study, [0.1, 0.1])

    # Only COMPLETE trials feed the median: after one pruned trial, the median rule has no
    # startup trials yet and a positive trial runs to the end.
    assert pruned_at is None
    assert study.trials[trial.number].state == optuna.trial.TrialState.COMPLETE


def test_no_report_no_prune():
    study = _study(NegativeCorrelationPruner(warmup_epochs=0))
    trial = study.ask()

    # Without any reported epoch there is nothing to judge.
    assert not trial.should_prune()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "0"}, "threshold"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"median_startup_trials": 2.5}, "median_startup_trials"),
        ({"median_warmup_epochs": True}, "median_warmup_epochs"),
        ({"median_min_trials": 0}, "median_min_trials"),
    ],
)
def test_invalid_settings_name_key(kwargs, key):
    # Every invalid constructor argument raises ConfigError naming the argument.
    with pytest.raises(ConfigError, match=key):
        NegativeCorrelationPruner(**kwargs)


def test_from_dict_round_trip_and_unknown_key():
    pruner = NegativeCorrelationPruner(threshold=0.1, warmup_epochs=3)

    # to_dict and from_dict give the same settings back.
    assert NegativeCorrelationPruner.from_dict(pruner.to_dict()).to_dict() == pruner.to_dict()
    # An unknown key in the pruner section is rejected by name.
    with pytest.raises(ConfigError, match="patience"):
        NegativeCorrelationPruner.from_dict({"patience": 3})


def test_median_reason_states_median():
    pruner = NegativeCorrelationPruner(threshold=-1.0, warmup_epochs=0, median_startup_trials=3, median_warmup_epochs=0)
    study = _study(pruner)
    for previous in ([0.2, 0.4], [0.3, 0.6], [0.9, 0.8]):
        _complete(study, previous)

    trial, pruned_at = _report_until_pruned(study, [0.1, 0.15])

    # The complete trials reported 0.2, 0.3 and 0.9 at epoch 0, so the median is 0.3.
    assert pruned_at == 0
    reason = study.trials[trial.number].user_attrs["pruned_reason"]
    assert reason == "best valid correlation 0.1000 up to epoch 0 is below the median 0.3000 of complete trials at that epoch"


@pytest.mark.parametrize(
    ("threshold_on", "curve", "expected_epoch"),
    [
        # A trial that scored 0.5 and then fell below zero: "current" prunes it at the fall.
        ("current", [0.5, 0.4, -0.1, -0.2], 2),
        ("best", [0.5, 0.4, -0.1, -0.2], None),
        # A trial that never rose above zero is pruned by both, once the warm-up is over.
        ("current", [-0.3, -0.2, -0.1, -0.1], 2),
        ("best", [-0.3, -0.2, -0.1, -0.1], 2),
    ],
)
def test_threshold_on_current_or_best(threshold_on, curve, expected_epoch):
    pruner = NegativeCorrelationPruner(threshold=0.0, warmup_epochs=2, median_startup_trials=1000, threshold_on=threshold_on)
    study = _study(pruner)

    trial, pruned_at = _report_until_pruned(study, curve)

    assert pruned_at == expected_epoch
    if expected_epoch is not None and threshold_on == "best":
        assert study.trials[trial.number].user_attrs["pruned_reason"].startswith("best valid correlation -0.1000 up to epoch 2")


def test_threshold_on_rejects_unknown_value():
    with pytest.raises(ConfigError, match=r"'threshold_on' must be one of current, best, got 'last'"):
        NegativeCorrelationPruner.from_dict({"threshold_on": "last"})
