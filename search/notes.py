"""Markdown notes on optuna-dashboard: one per finished trial and one for the study.

optuna-dashboard keeps notes in the study's system attributes, which Optuna lets anyone
update at any time, so a note can be written after ``study.tell`` has finished a trial (COMPLETE,
PRUNED or FAIL). `optuna_dashboard.save_note` takes a live `optuna.Trial`; the runner usually only
has the study and a trial number after ``tell``, so `write_trial_note` accepts a trial
number, a `FrozenTrial` or a live trial.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import optuna
import optuna_dashboard
import yaml
from optuna.trial import FrozenTrial, TrialState

from adapters.errors import StudyError
from search.objective import DEGENERATE_ATTR, METRIC_NAME, ORIGIN_ATTR, ORIGINAL_SETTINGS_ORIGIN
from search.pruner import PRUNED_REASON_ATTR, PRUNED_RULE_ATTR

__all__ = [
    "find_baseline",
    "read_trial_note",
    "render_study_note",
    "render_trial_note",
    "resolve_trial",
    "write_study_note",
    "write_trial_note",
]

logger = logging.getLogger(__name__)

# Rows of the metrics table: key in the stored metrics dict, label, and whether it is a share.
METRIC_ROWS = (
    ("corr", "Pearson r", False),
    ("mae", "MAE", False),
    ("mse", "MSE", False),
    ("acc2_nonneg", "Acc-2 (negative / non-negative)", True),
    ("acc2_nonzero", "Acc-2 (negative / positive, zero labels dropped)", True),
    ("f1_nonneg", "F1 (negative / non-negative)", True),
    ("f1_nonzero", "F1 (negative / positive, zero labels dropped)", True),
    ("acc7", "Acc-7", True),
)


def resolve_trial(study: optuna.Study, trial: int | FrozenTrial | optuna.Trial) -> FrozenTrial:
    """Return the stored `FrozenTrial` for a trial number, a frozen trial or a live trial.

    Raises
    ------
    StudyError
        If the study has no trial of that number.
    """
    if isinstance(trial, FrozenTrial):
        return trial
    number = trial.number if isinstance(trial, optuna.Trial) else trial
    if isinstance(number, bool) or not isinstance(number, int):
        raise StudyError(f"trial must be a trial number, a FrozenTrial or an optuna.Trial, got {trial!r}")
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StudyError(f"study {study.study_name!r} has no trial {number} (it has {len(trials)}); pass a stored trial number")
    return trials[number]


def _note_target(study: optuna.Study, frozen: FrozenTrial) -> SimpleNamespace:
    # save_note and get_note read only these three attributes of a trial (optuna-dashboard
    # 0.21, _note.py), so a finished trial needs no live optuna.Trial.
    return SimpleNamespace(storage=study._storage, study=study, _trial_id=frozen._trial_id)


def write_trial_note(
    study: optuna.Study,
    trial: int | FrozenTrial | optuna.Trial,
    *,
    epochs: int | None = None,
) -> str:
    """Render the trial's note from its stored attributes and save it on optuna-dashboard.

    Parameters
    ----------
    study : optuna.Study
    trial : int, FrozenTrial or optuna.Trial
        Trial number or trial object; the attributes are read from the storage, so call this
        after ``study.tell``.
    epochs : int or None
        Planned epochs, shown beside a pruned trial's last epoch.

    Returns
    -------
    str
        The Markdown body that was saved.
    """
    frozen = resolve_trial(study, trial)
    if isinstance(trial, (int, optuna.Trial)):
        # Re-read so that attributes set since a FrozenTrial was taken are included.
        frozen = study._storage.get_trial(frozen._trial_id)
    body = render_trial_note(frozen, pruner=_pruner_settings(study), epochs=epochs)
    optuna_dashboard.save_note(_note_target(study, frozen), body)
    logger.debug("saved the dashboard note of trial %d (%d characters)", frozen.number, len(body))
    return body


def read_trial_note(study: optuna.Study, trial: int | FrozenTrial | optuna.Trial) -> str:
    """Return the trial's dashboard note ("" when none was saved)."""
    frozen = resolve_trial(study, trial)
    return optuna_dashboard.get_note(_note_target(study, frozen))


def write_study_note(
    study: optuna.Study,
    config_dict: Mapping[str, Any] | None,
    data_summary: Mapping[str, Any] | None,
    baseline: int | FrozenTrial | None = None,
) -> str:
    """Render the study note (config, data summary, original-settings baseline) and save it.

    Parameters
    ----------
    study : optuna.Study
    config_dict : mapping or None
        The study config as plain types (``StudyConfig.to_dict()``); None reads the config
        stored in the study's ``adaptsearch`` user attribute.
    data_summary : mapping or None
        Counts and checks of the prepared data, e.g. ``{"source": prepared.report, "target": ...}``.
    baseline : int, FrozenTrial or None
        The trial that ran the original script's settings; None looks it up by its origin
        user attribute. Call again after that trial finishes to show its result.

    Returns
    -------
    str
        The Markdown body that was saved.
    """
    if config_dict is None:
        config_dict = (study.user_attrs.get("adaptsearch") or {}).get("config")
    if baseline is None:
        baseline_trial = find_baseline(study)
    else:
        baseline_trial = resolve_trial(study, baseline)
        baseline_trial = study._storage.get_trial(baseline_trial._trial_id)
    body = render_study_note(study, config_dict, data_summary, baseline_trial)
    optuna_dashboard.save_note(study, body)
    logger.debug("saved the dashboard note of study %r (%d characters)", study.study_name, len(body))
    return body


def find_baseline(study: optuna.Study) -> FrozenTrial | None:
    """Return the original-settings trial, preferring a finished one, or None."""
    marked = [trial for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN]
    finished = [trial for trial in marked if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    candidates = finished or marked
    return candidates[0] if candidates else None


def _pruner_settings(study: optuna.Study) -> dict | None:
    stored = study.user_attrs.get("adaptsearch") or {}
    return (stored.get("config") or {}).get("pruner")


# --- rendering ------------------------------------------------------------------------------


def render_trial_note(frozen: FrozenTrial, *, pruner: Mapping[str, Any] | None = None, epochs: int | None = None) -> str:
    """Return the Markdown note of one trial: outcome, metrics, diagnostics, learning rate."""
    attrs = frozen.user_attrs
    title = f"## Trial {frozen.number}"
    if attrs.get(ORIGIN_ATTR) == ORIGINAL_SETTINGS_ORIGIN:
        title += " (original script's settings)"
    lines = [title, "", _outcome_line(frozen, epochs)]

    if frozen.state == TrialState.PRUNED:
        lines += ["", "### Why it was pruned", "", _pruned_text(frozen, pruner)]
    if attrs.get(DEGENERATE_ATTR):
        lines += ["", f"**Correlation undefined:** {attrs[DEGENERATE_ATTR]}; the trial's value is -1."]

    metrics = attrs.get("metrics")
    if metrics:
        epoch = attrs.get("best_epoch")
        heading = f"### MOSI-valid metrics (epoch {epoch})" if epoch is not None else "### MOSI-valid metrics"
        if frozen.state == TrialState.PRUNED:
            heading = f"### MOSI-valid metrics (epoch {epoch}, the best before pruning)"
        lines += ["", heading, "", *_metrics_table(metrics)]

    diagnostics = attrs.get("diagnostics")
    if diagnostics:
        lines += ["", "### Diagnostics", "", *_diagnostics_lines(diagnostics)]

    history = attrs.get("history") or []
    schedule = lr_schedule(history)
    if schedule:
        lines += ["", "### Learning rate", "", schedule]
    if history:
        lines += ["", "### Per-epoch MOSI-valid correlation", "", _corr_sparkline(history)]

    if frozen.params:
        lines += ["", "### Sampled parameters", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {name} | {_format_value(value)} |" for name, value in sorted(frozen.params.items())]
    return "\n".join(lines) + "\n"


def _outcome_line(frozen: FrozenTrial, epochs: int | None) -> str:
    attrs = frozen.user_attrs
    parts = [f"**State:** {frozen.state.name}"]
    if frozen.state == TrialState.COMPLETE and frozen.values:
        values = ", ".join(f"{value:+.4f}" for value in frozen.values)
        parts.append(f"**value ({METRIC_NAME}):** {values}")
    last = frozen.last_step
    if frozen.state == TrialState.PRUNED and last is not None:
        of = f" of {epochs}" if epochs else ""
        parts.append(f"**stopped after epoch** {last}{of}")
    if attrs.get("best_epoch") is not None:
        parts.append(f"**best epoch:** {attrs['best_epoch']}")
    if attrs.get("seconds") is not None:
        parts.append(f"**time:** {attrs['seconds']:.1f} s")
    if attrs.get("seed_scores"):
        scores = ", ".join(f"{score:+.4f}" for score in attrs["seed_scores"])
        parts.append(f"**per-seed scores:** {scores}")
    return " · ".join(parts)


def _pruned_text(frozen: FrozenTrial, pruner: Mapping[str, Any] | None) -> str:
    attrs = frozen.user_attrs
    reason = attrs.get(PRUNED_REASON_ATTR)
    rule = attrs.get(PRUNED_RULE_ATTR)
    if reason:
        text = f"{rule} rule: {reason}" if rule else str(reason)
    else:
        last = frozen.last_step
        if last is None:
            text = "pruned before it reported any epoch"
        else:
            text = f"pruned after epoch {last} with {METRIC_NAME} {_format_float(frozen.intermediate_values[last])}"
    if pruner:
        settings = ", ".join(f"{key}={value}" for key, value in pruner.items())
        text += f"\n\nPruner settings: {settings}."
    return text


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for key, label, share in METRIC_ROWS:
        value = metrics.get(key)
        if key == "corr" and value is None and metrics.get("corr_reason"):
            shown = f"undefined ({metrics['corr_reason']})"
        elif value is None:
            shown = "n/a"
        elif share:
            shown = f"{100.0 * value:.1f} %"
        elif key in ("mae", "mse"):
            shown = f"{value:.4f}"
        else:
            shown = _format_float(value)
        rows.append(f"| {label} | {shown} |")
    if metrics.get("n") is not None:
        rows.append(f"| segments | {metrics['n']} |")
    return rows


def _diagnostics_lines(diagnostics: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    flags = []
    if diagnostics.get("collapsed"):
        flags.append("**predictions collapsed**")
    collapsed_features = [
        modality
        for modality, summary in (diagnostics.get("features") or {}).items()
        if _feature_collapsed(summary, diagnostics.get("collapse_ratio"))
    ]
    if collapsed_features:
        flags.append(f"**adapted features collapsed:** {', '.join(collapsed_features)}")
    lines.append("Collapse flags: " + ("; ".join(flags) if flags else "none"))

    features = diagnostics.get("features") or {}
    if features:
        lines += [
            "",
            "Adapted MOSI features against MOSEI training features (normalised units):",
            "",
            "| modality | adapted mean | MOSEI mean | adapted std | MOSEI std | adapted min … max | MOSEI min … max |",
            "|---|---|---|---|---|---|---|",
        ]
        for modality, summary in features.items():
            adapted, source = summary.get("adapted", {}), summary.get("source", {})
            lines.append(
                f"| {modality} | {_format_float(adapted.get('mean'))} | {_format_float(source.get('mean'))} "
                f"| {_format_float(adapted.get('std'))} | {_format_float(source.get('std'))} "
                f"| {_format_float(adapted.get('min'))} … {_format_float(adapted.get('max'))} "
                f"| {_format_float(source.get('min'))} … {_format_float(source.get('max'))} |"
            )

    predictions, labels = diagnostics.get("predictions"), diagnostics.get("labels")
    if predictions and labels:
        lines += [
            "",
            "Prediction spread against the labels:",
            "",
            "| | mean | std | min | max | positive share |",
            "|---|---|---|---|---|---|",
        ]
        positive = diagnostics.get("positive_share") or {}
        for name, summary in (("predictions", predictions), ("labels", labels)):
            lines.append(
                f"| {name} | {_format_float(summary.get('mean'))} | {_format_float(summary.get('std'))} "
                f"| {_format_float(summary.get('min'))} | {_format_float(summary.get('max'))} "
                f"| {_format_share(positive.get(name))} |"
            )
    if diagnostics.get("sign_agreement") is not None:
        lines += ["", f"Sign agreement with non-zero labels: {_format_share(diagnostics['sign_agreement'])}"]
    nonfinite = {key: value for key, value in (diagnostics.get("nonfinite_share") or {}).items() if value}
    if nonfinite:
        shares = ", ".join(f"{modality} {_format_share(value)}" for modality, value in nonfinite.items())
        lines += ["", f"Non-finite input values replaced during preparation: {shares}"]
    for warning in diagnostics.get("warnings") or []:
        lines += ["", f"> ⚠ {warning}"]
    return lines


def _feature_collapsed(summary: Mapping[str, Any], ratio: float | None) -> bool:
    adapted_std = (summary.get("adapted") or {}).get("std")
    source_std = (summary.get("source") or {}).get("std")
    if ratio is None or adapted_std is None or not source_std:
        return False
    return adapted_std < ratio * source_std


def lr_schedule(history: Sequence[Mapping[str, Any]]) -> str:
    """Return the learning rate per epoch as runs of equal values, e.g. "epochs 1-12: 5e-04 → 13-20: 3.5e-04".

    Parameters
    ----------
    history : sequence of mappings
        The per-epoch history user attribute (``epoch`` and ``lr`` keys).
    """
    runs: list[tuple[int, int, float]] = []
    for record in history:
        lr, epoch = record.get("lr"), record.get("epoch")
        if lr is None or epoch is None:
            continue
        if runs and math.isclose(runs[-1][2], lr, rel_tol=1e-9):
            runs[-1] = (runs[-1][0], epoch, lr)
        else:
            runs.append((epoch, epoch, lr))
    parts = []
    for first, last, lr in runs:
        span = f"{first}" if first == last else f"{first}-{last}"
        parts.append(f"epochs {span}: {lr:.3g}")
    return " → ".join(parts)


_BLOCKS = "▁▂▃▄▅▆▇█"


def _corr_sparkline(history: Sequence[Mapping[str, Any]]) -> str:
    values = [record.get(METRIC_NAME) for record in history]
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return "no finite values"
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    marks = "".join(
        " " if value is None or not math.isfinite(value) else _BLOCKS[int((value - low) / span * (len(_BLOCKS) - 1))]
        for value in values
    )
    return f"`{marks}` from {_format_float(values[0])} to {_format_float(values[-1])} (min {low:+.4f}, max {high:+.4f})"


def render_study_note(
    study: optuna.Study,
    config_dict: Mapping[str, Any] | None,
    data_summary: Mapping[str, Any] | None,
    baseline: FrozenTrial | None,
) -> str:
    """Return the Markdown note of a study: baseline result, data summary and config."""
    names = study.metric_names or [METRIC_NAME, "valid_mae"][: len(study.directions)]
    objectives = ", ".join(
        f"{name} ({direction.name.lower()})" for name, direction in zip(names, study.directions)
    )
    lines = [f"## Study {study.study_name}", "", f"Objectives on MOSI valid: {objectives}."]
    stored = study.user_attrs.get("adaptsearch") or {}
    if stored.get("version"):
        lines.append(f"Created by adaptsearch {stored['version']} on {stored.get('created', '?')}.")
    fingerprints = stored.get("fingerprints")
    if fingerprints:
        lines.append("Data fingerprints: " + ", ".join(f"{role} `{value}`" for role, value in fingerprints.items()) + ".")

    lines += ["", "### Baseline: the original script's settings", ""]
    if baseline is None:
        lines.append("No trial ran the original settings yet.")
    else:
        lines.append(_outcome_line(baseline, None).replace("**State:**", f"Trial {baseline.number} ·"))
        metrics = baseline.user_attrs.get("metrics")
        if metrics:
            lines += ["", *_metrics_table(metrics)]
        if baseline.state == TrialState.PRUNED:
            lines += ["", _pruned_text(baseline, None)]

    if data_summary:
        lines += ["", "### Data", "", "| item | value |", "|---|---|"]
        lines += [f"| {key} | {_format_value(value)} |" for key, value in _flatten(data_summary)]

    if config_dict:
        text = yaml.safe_dump(json.loads(json.dumps(config_dict, default=str)), sort_keys=False, allow_unicode=True)
        lines += ["", "### Study config", "", "```yaml", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _format_float(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:+.4f}" if isinstance(value, (int, float)) else str(value)


def _format_share(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(str(item) for item in value[:10])
        return shown + (f" … ({len(value)} in all)" if len(value) > 10 else "")
    return str(value).replace("|", "\\|")
