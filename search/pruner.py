"""Pruning: stop trials whose MOSI-valid correlation stays negative, then the median rule.

Each trial reports one value per epoch: the Pearson correlation between the adapted model's
predictions and the MOSI-valid labels (`Metrics.score`, which is -1.0 when the correlation
is undefined, e.g. for constant predictions).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import optuna
from optuna.pruners import BasePruner, MedianPruner
from optuna.trial import FrozenTrial, TrialState

from adapters.errors import ConfigError

logger = logging.getLogger(__name__)

PRUNED_REASON_ATTR = "pruned_reason"
PRUNED_RULE_ATTR = "pruned_rule"


# Values of NegativeCorrelationPruner's `threshold_on`: the latest epoch's value or the best so far.
THRESHOLD_ON = ("current", "best")


class NegativeCorrelationPruner(BasePruner):
    """Prune a trial whose correlation stays below `threshold`, then apply the median rule.

    Two rules, checked in this order at every reported epoch:

    1. Threshold: once the reported epoch is at least `warmup_epochs`, a trial whose latest
       value (``threshold_on="current"``) or best value so far (``"best"``) is below
       `threshold` is pruned. A NaN value (undefined correlation) counts as below any
       threshold.
    2. Median: once `median_startup_trials` trials are complete and the epoch is at least
       `median_warmup_epochs`, a trial whose best value so far is below the median of the
       complete trials at the same epoch is pruned (`optuna.pruners.MedianPruner`).

    The pruner writes the rule and a sentence on why into the trial's user attributes
    ``pruned_rule`` ("threshold" or "median") and ``pruned_reason``.

    Parameters
    ----------
    threshold : float
        Correlation a trial must reach, in [-1, 1].
    warmup_epochs : int
        First epoch number at which the threshold rule applies (>= 0).
    median_startup_trials : int
        Complete trials needed before the median rule applies (>= 0).
    median_warmup_epochs : int
        First epoch number at which the median rule applies (>= 0).
    median_min_trials : int
        Trials that must have reported the same epoch for the median rule to judge (>= 1).
    threshold_on : {"current", "best"}
        The value the threshold rule judges. "current" also prunes a trial whose
        correlation fell below the threshold after a higher epoch, which is how the original
        settings collapse. "best" keeps such a trial, whose restored best epoch may still
        score well.
    """

    def __init__(
        self,
        threshold: float = 0.0,
        warmup_epochs: int = 5,
        median_startup_trials: int = 5,
        median_warmup_epochs: int = 3,
        median_min_trials: int = 1,
        threshold_on: str = "current",
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"pruner: 'threshold' must be a number in [-1, 1], got {threshold!r}")
        for key, value, minimum in (
            ("warmup_epochs", warmup_epochs, 0),
            ("median_startup_trials", median_startup_trials, 0),
            ("median_warmup_epochs", median_warmup_epochs, 0),
            ("median_min_trials", median_min_trials, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"pruner: {key!r} must be an integer >= {minimum}, got {value!r}")
        if threshold_on not in THRESHOLD_ON:
            raise ConfigError(f"pruner: 'threshold_on' must be one of {', '.join(THRESHOLD_ON)}, got {threshold_on!r}")
        self.threshold = float(threshold)
        self.threshold_on = threshold_on
        self.warmup_epochs = warmup_epochs
        self.median_startup_trials = median_startup_trials
        self.median_warmup_epochs = median_warmup_epochs
        self.median_min_trials = median_min_trials
        self._median = MedianPruner(
            n_startup_trials=median_startup_trials,
            n_warmup_steps=median_warmup_epochs,
            n_min_trials=median_min_trials,
        )

    @classmethod
    def from_dict(cls, mapping: dict | None) -> NegativeCorrelationPruner:
        """Build a pruner from a study config's ``pruner`` section; unknown keys raise `ConfigError`."""
        mapping = dict(mapping or {})
        allowed = (
            "threshold", "warmup_epochs", "median_startup_trials", "median_warmup_epochs", "median_min_trials", "threshold_on"
        )
        unknown = sorted(set(mapping) - set(allowed))
        if unknown:
            raise ConfigError(f"pruner: unknown key {unknown[0]!r}; allowed keys are {list(allowed)}")
        return cls(**mapping)

    def to_dict(self) -> dict:
        """Return the settings as a mapping that `from_dict` reads back."""
        return {
            "threshold": self.threshold,
            "warmup_epochs": self.warmup_epochs,
            "median_startup_trials": self.median_startup_trials,
            "median_warmup_epochs": self.median_warmup_epochs,
            "median_min_trials": self.median_min_trials,
            "threshold_on": self.threshold_on,
        }

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False

        if self.threshold_on == "current":
            judged = trial.intermediate_values[step]
            described = f"valid correlation {judged:.4f} at epoch {step}"
        else:
            judged = _best_value(trial)
            described = f"best valid correlation {judged:.4f} up to epoch {step}"
        if step >= self.warmup_epochs and (math.isnan(judged) or judged < self.threshold):
            reason = (
                f"{described} is below the threshold "
                f"{self.threshold:g}, which applies from epoch {self.warmup_epochs} on"
            )
            self._record(study, trial, "threshold", reason)
            return True

        if self._median.prune(study, trial):
            reason = (
                f"best valid correlation {_best_value(trial):.4f} up to epoch {step} is below "
                f"the median {_median_at(study, step):.4f} of complete trials at that epoch"
            )
            self._record(study, trial, "median", reason)
            return True
        return False

    @staticmethod
    def _record(study: optuna.Study, trial: FrozenTrial, rule: str, reason: str) -> None:
        # A pruner receives a FrozenTrial, which cannot set attributes itself, so the
        # reason goes to the storage directly; optuna's own objects do the same.
        study._storage.set_trial_user_attr(trial._trial_id, PRUNED_RULE_ATTR, rule)
        study._storage.set_trial_user_attr(trial._trial_id, PRUNED_REASON_ATTR, reason)
        logger.debug("trial %d pruned by the %s rule: %s", trial.number, rule, reason)


def count_pruned_by_rule(trials: list[FrozenTrial]) -> dict[str, int]:
    """Count PRUNED trials by the rule stored on them: "threshold", "median", or "unknown" if none is stored."""
    counts: dict[str, int] = {}
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            rule = str(trial.user_attrs.get(PRUNED_RULE_ATTR, "unknown"))
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def _median_at(study: optuna.Study, step: int) -> float:
    """Return the median of the complete trials' values at `step`, as Optuna's `MedianPruner` computes it."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [trial.intermediate_values[step] for trial in complete if step in trial.intermediate_values]
    return float(np.nanmedian(values)) if values else math.nan


def _best_value(trial: FrozenTrial) -> float:
    values = [value for value in trial.intermediate_values.values() if not math.isnan(value)]
    return max(values) if values else math.nan
