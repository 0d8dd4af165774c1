"""A study as engine-neutral records: what every engine reports and every reader builds.

No Optuna, KerasTuner, pandas or TensorFlow import: `tuning report` builds these straight from
a study's files (``tuning.results.optuna_sqlite``); a running sweep gets them from its engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuning.payload import Payload

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
FINISHED = ("COMPLETE", "PRUNED")  # what counts toward study.n_trials
# Trial user attributes of a warm start (warm_start.from): its source, on every trial it gave;
# and, on a trial copied in from an earlier study on the same data, that trial's number there.
# A copied trial ran in the earlier study: it counts toward neither study.n_trials nor a budget.
WARM_ATTR, WARM_FROM_ATTR = "warm_start", "warm_start_trial"
# Optuna stores each user attribute in its own transaction (no batch call), so a trial's
# attributes are packed into three, one per moment they are known, and readers see them flattened
# (experiments/benchmarks/writes.py counts the writes):
# - ``owner``, as the trial is asked for: the worker running it, its PID namespace, its sampler's
#   seed (what stale-trial checks read);
# - ``start``, before it trains: its seed, the metric and direction its value is in, and with a
#   budget the epochs it claimed (rewritten whole at each claim);
# - ``outcome``, as it ends: its train_*/val_*/gap_* values, best epoch, epochs trained, ...
# What a failed or interrupted trial keeps (``fail_reason``, ``interrupted``), what a queued
# trial is given (``retry_of``, ``warm_start``) and studies written before the packing stay flat.
OWNER_ATTR, START_ATTR, OUTCOME_ATTR = "owner", "start", "outcome"
PACKED_ATTRS = (OWNER_ATTR, START_ATTR, OUTCOME_ATTR)


def flat_attrs(stored: Payload) -> dict[str, Any]:
    """A trial's user attributes as one flat record: the entries of its packed attributes
    (``owner``, ``start``, ``outcome``, in that order) beside the others."""
    flat = {key: value for key, value in stored.items() if key not in PACKED_ATTRS}
    for key in PACKED_ATTRS:
        packed = stored.get(key)
        if isinstance(packed, Mapping):
            flat.update(packed)
    return flat


@dataclass(frozen=True)
class TrialSummary:
    """One trial: state, objective value, parameters (as sampled), user attributes, timing,
    and the objective per epoch that the engine saw (``intermediate_values``, epoch -> value).
    In a two-objective study (selection=pareto) ``value`` is the first objective, the metric;
    the second, the overfitting gap, is the user attribute ``gap_<metric>``."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    int_params: frozenset[str] = frozenset()
    user_attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    start_time: float | None = None  # seconds since the epoch
    intermediate_values: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySummary:
    """A study and all its trials. ``best_number`` is the engine's own pick when it has one
    (the selection's pick: tuning.study.selection); otherwise the best complete value wins."""

    name: str
    direction: str  # "minimize" or "maximize"
    user_attrs: dict[str, Any]
    trials: list[TrialSummary]
    engine: str = "optuna"
    best_number: int | None = None

    @property
    def metric(self) -> str:
        """The objective's name (``study.metric`` of the sweep that made the study)."""
        return str(self.user_attrs.get("metric", "value"))

    def finished_count(self) -> int:
        """Trials that count toward ``study.n_trials`` (COMPLETE or PRUNED; not those a warm
        start copied in from an earlier study)."""
        return sum(t.state in FINISHED and WARM_FROM_ATTR not in t.user_attrs for t in self.trials)

    def best(self) -> TrialSummary | None:
        """The best trial, or None when no trial completed with a finite value."""
        if self.best_number is not None:
            return next((t for t in self.trials if t.number == self.best_number), None)
        complete = [
            t for t in self.trials if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value)
        ]
        if not complete:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        return min(complete, key=lambda t: (sign * float(t.value or 0.0), t.number))


def state_counts(states: Iterable[str]) -> dict[str, int]:
    """How many trials are in each state, in a fixed order, states with none left out."""
    counts = dict.fromkeys(STATE_ORDER, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return {k: v for k, v in counts.items() if v}


def counts_line(states: Iterable[str]) -> str:
    """E.g. ``4 trials: 2 COMPLETE, 1 PRUNED, 1 FAIL``."""
    counts = state_counts(states)
    return f"{sum(counts.values())} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
