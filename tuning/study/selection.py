"""Which trial a study picks: by validation score alone, within a gap limit, or from the Pareto front.

Pure functions over engine-neutral records (no Optuna, no TensorFlow): the sweep, `tuning
report`, MLflow and best.yaml all ask this module, so they all name the same trial and give the
same reason. The gap is the trial's overfitting gap on the study's own metric (``gap_<name>`` for
``study.metric`` = ``val_<name>``: validation minus training for losses and errors, training
minus validation for accuracy-like metrics; positive when the model overfits), measured at the
restored best weights (with ``cv.folds``: the mean over folds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from tuning.config.selection import SELECTION_ATTR, Selection
from tuning.study.summary import StudySummary, TrialSummary


def gap_key(metric: str) -> str:
    """The user attribute holding the gap on ``metric`` (``val_log_loss`` -> ``gap_log_loss``)."""
    return "gap_" + metric.removeprefix("val_")


def gap_of(trial: TrialSummary, metric: str) -> float | None:
    value = trial.user_attrs.get(gap_key(metric))
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def overfit(gap: float) -> float:
    """The Pareto objective: the positive part of the gap. A negative gap (validation better than
    training, e.g. a lucky split) is not better generalization, so it must not beat zero."""
    return max(gap, 0.0)


def _complete(study: StudySummary) -> list[TrialSummary]:
    return [
        t
        for t in study.trials
        if t.state == "COMPLETE"
        and t.value is not None
        and math.isfinite(t.value)
        and gap_of(t, study.metric) is not None
    ]


def _score(study: StudySummary, trial: TrialSummary) -> float:
    """The value on a smaller-is-better scale."""
    return -float(trial.value or 0.0) if study.direction == "maximize" else float(trial.value or 0.0)


def _points(study: StudySummary) -> dict[int, tuple[float, float]]:
    return {t.number: (_score(study, t), overfit(gap_of(t, study.metric) or 0.0)) for t in _complete(study)}


def _front(points: dict[int, tuple[float, float]]) -> list[int]:
    """The trials no other trial beats on both objectives (equal points share the front)."""
    return [
        n
        for n, p in points.items()
        if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values())
    ]


def pareto_ranks(study: StudySummary) -> dict[int, int]:
    """Non-dominated sorting of the complete trials on (score, overfit gap): rank 0 is the front."""
    ranks: dict[int, int] = {}
    left = _points(study)
    rank = 0
    while left:
        for n in _front(left):
            ranks[n] = rank
            del left[n]
        rank += 1
    return ranks


def feasible(study: StudySummary, trial: TrialSummary, selection: Selection) -> bool | None:
    """Whether the trial's gap is within ``max_gap`` (None: no gap measured, or no limit)."""
    gap = gap_of(trial, study.metric)
    if gap is None or selection.max_gap is None:
        return None
    return gap <= selection.max_gap


def pick(study: StudySummary, selection: Selection) -> tuple[TrialSummary | None, str]:
    """The trial the selection picks and why, in one line.

    best: the best value. constrained: the best value among trials with gap <= max_gap; when none
    is feasible, the smallest violation (then the best value). pareto: among the front (value vs
    overfit gap), the best value whose gap <= max_gap; with no limit, or none within it, the best
    value when no limit is set, else the front's smallest gap.
    """
    metric = study.metric
    complete = _complete(study)
    if selection.mode == "best" or not complete:
        best = _best_value(study, [t for t in study.trials if t.state == "COMPLETE"])
        return best, f"best {metric} of the complete trials"
    limit = selection.max_gap
    if selection.mode == "constrained":
        assert limit is not None
        ok = [t for t in complete if (gap_of(t, metric) or 0.0) <= limit]
        if ok:
            return _best_value(
                study, ok
            ), f"best {metric} among the {len(ok)} trial(s) with {gap_key(metric)} <= {limit:g}"
        least = min(complete, key=lambda t: ((gap_of(t, metric) or 0.0) - limit, _score(study, t), t.number))
        excess = (gap_of(least, metric) or 0.0) - limit
        return least, (
            f"no trial has {gap_key(metric)} <= {limit:g}: picked the smallest violation "
            f"({gap_key(metric)} {excess:+.4g} over the limit)"
        )
    on_front = set(_front(_points(study)))  # the front alone: this runs after every trial
    front = [t for t in complete if t.number in on_front]
    if limit is None:
        return _best_value(study, front), f"best {metric} on the Pareto front ({len(front)} trial(s))"
    within = [t for t in front if (gap_of(t, metric) or 0.0) <= limit]
    if within:
        return _best_value(study, within), (
            f"best {metric} on the Pareto front ({len(front)} trial(s)) with {gap_key(metric)} <= {limit:g}"
        )
    least = min(front, key=lambda t: (gap_of(t, metric) or 0.0, _score(study, t), t.number))
    return least, f"no trial on the Pareto front has {gap_key(metric)} <= {limit:g}: picked its smallest gap"


def _best_value(study: StudySummary, trials: Sequence[TrialSummary]) -> TrialSummary | None:
    finite = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    return min(finite, key=lambda t: (_score(study, t), t.number)) if finite else None


def selection_of(study: StudySummary) -> Selection:
    """The selection the study was made with (``best`` for studies made before it was kept)."""
    return Selection.from_attr(study.user_attrs.get(SELECTION_ATTR))


def apply(study: StudySummary) -> StudySummary:
    """The study with ``best_number`` set to its selection's pick (unchanged for ``best``)."""
    selection = selection_of(study)
    if selection.mode == "best":
        return study
    chosen, _ = pick(study, selection)
    return dataclasses.replace(study, best_number=chosen.number if chosen is not None else None)


def trial_marks(study: StudySummary) -> dict[int, dict[str, Any]]:
    """Per trial, what the selection says of it: ``feasible`` (constrained, pareto with a limit)
    and ``pareto_rank`` (pareto; 0 = on the front). Empty for ``best``."""
    selection = selection_of(study)
    if selection.mode == "best":
        return {}
    ranks = pareto_ranks(study) if selection.mode == "pareto" else {}
    marks: dict[int, dict[str, Any]] = {}
    for t in study.trials:
        mark: dict[str, Any] = {}
        ok = feasible(study, t, selection)
        if ok is not None:
            mark["feasible"] = ok
        if t.number in ranks:
            mark["pareto_rank"] = ranks[t.number]
        marks[t.number] = mark
    return marks


def study_attrs(selection: Selection, folds: int | None) -> dict[str, Any]:
    """Study attributes kept for the report, MLflow and best.yaml: the selection and cv.folds."""
    return {SELECTION_ATTR: selection.as_attr(), "cv_folds": folds}


def pick_reason(study: StudySummary) -> str:
    """Why the study's best trial is its pick, in one line."""
    return pick(study, selection_of(study))[1]
