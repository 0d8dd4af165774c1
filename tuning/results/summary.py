"""A study as plain data: what the report table needs, from Optuna or straight from its file.

No Optuna, pandas or TensorFlow import: `tuning report` builds these from the SQLite file
(``tuning.results.optuna_sqlite``); a running sweep builds them from its ``optuna.Study``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class TrialSummary:
    """One trial: state, objective value, parameters (as sampled), user attributes, duration."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    int_params: frozenset[str] = frozenset()
    user_attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class StudySummary:
    name: str
    direction: str  # "minimize" or "maximize"
    user_attrs: dict[str, Any]
    trials: list[TrialSummary]

    @property
    def metric(self) -> str:
        """The objective's name (``study.metric`` of the sweep that made the study)."""
        return str(self.user_attrs.get("metric", "value"))


def from_study(study: Any) -> StudySummary:
    """The summary of an ``optuna.Study`` (single objective)."""
    trials = [
        TrialSummary(
            number=t.number,
            state=t.state.name,
            value=t.value,
            params=dict(t.params),
            int_params=frozenset(
                n for n, d in t.distributions.items() if type(d).__name__ == "IntDistribution"
            ),
            user_attrs=dict(t.user_attrs),
            seconds=t.duration.total_seconds() if t.duration is not None else None,
        )
        for t in study.get_trials(deepcopy=False)
    ]
    return StudySummary(
        name=study.study_name,
        direction=study.direction.name.lower(),
        user_attrs=dict(study.user_attrs),
        trials=trials,
    )


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
