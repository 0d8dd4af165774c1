"""Trials as a table (pandas), for the end-of-sweep summary and `tuning report`. No TensorFlow."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, best first: state, objective, best epoch, gaps, params, seconds.

    Built from ``Study.trials_dataframe``; the objective column is named after the metric.
    """
    metric = study.user_attrs.get("metric", "value")
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    if frame.empty:
        return pd.DataFrame(columns=["trial", "state", metric])
    out = pd.DataFrame({"trial": frame["number"], "state": frame["state"], metric: frame["value"]})
    for name in ("best_epoch", "epochs_trained"):
        key = f"user_attrs_{name}"
        if key in frame:
            out[name] = frame[key].astype("Int64")
    gap_cols = sorted(c for c in frame.columns if c.startswith("user_attrs_gap_"))
    for col in gap_cols:
        out[col.removeprefix("user_attrs_")] = frame[col]
    params = _ordered_params([c.removeprefix("params_") for c in frame.columns if c.startswith("params_")])
    int_params = {
        name
        for t in study.get_trials(deepcopy=False)
        for name, dist in t.distributions.items()
        if isinstance(dist, optuna.distributions.IntDistribution)
    }
    for name in params:
        # A layer some trials lack leaves NaN in its column, which pandas would show as 33.0.
        column = frame[f"params_{name}"]
        out[name] = column.astype("Int64") if name in int_params else column
    out["seconds"] = frame["duration"].dt.total_seconds().round(1)
    if "user_attrs_fail_reason" in frame:
        out["fail_reason"] = frame["user_attrs_fail_reason"]
    ascending = study.direction == optuna.study.StudyDirection.MINIMIZE
    return out.sort_values(metric, ascending=ascending, na_position="last", kind="stable").reset_index(
        drop=True
    )


def _ordered_params(names: list[str]) -> list[str]:
    """Search-space order: layers first, units per layer in order, the rest alphabetically."""
    units = sorted((n for n in names if n.startswith("units_")), key=lambda n: int(n.split("_")[1]))
    rest = sorted(n for n in names if not n.startswith("units_") and n != "n_layers")
    return (["n_layers"] if "n_layers" in names else []) + units + rest


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s: 0 for s in STATE_ORDER}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return {k: v for k, v in counts.items() if v}


def format_table(
    table: pd.DataFrame, top: int | None = None, drop: tuple[str, ...] = ("fail_reason",)
) -> str:
    """Text table of the first ``top`` rows, floats rounded for reading."""
    shown = table.head(top) if top else table
    shown = shown.drop(columns=[c for c in drop if c in shown.columns])
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def counts_line(study: optuna.Study) -> str:
    counts = state_counts(study)
    total = sum(counts.values())
    return f"{total} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def best_summary(study: optuna.Study) -> dict[str, Any] | None:
    """Best trial's number, value and params, or None while no trial has completed."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    return {"trial": best.number, "value": best.value, "params": best.params, **best.user_attrs}
