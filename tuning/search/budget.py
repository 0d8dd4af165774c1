"""``budget.epochs`` / ``budget.minutes``: what a study has spent, read from its trials.

The spent budget is never a counter of its own: every worker's trials are in the study, and each
one says what it spent (a finished trial its ``epochs_trained`` and duration, a running one the
epochs it has claimed and the time since it started), so every worker and every resume reads
the same total. Before each epoch a trial claims it (``EPOCHS_ATTR``, written before it reads
the total): two workers that claim the last epoch together both see the other's claim and stop,
so the study never trains more than ``budget.epochs``. Minutes are checked at each epoch end:
the study may run over by the epochs then in progress. Trials a warm start added
(``WARM_FROM_ATTR``) spent nothing here. No TensorFlow, no engine import.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from tuning.config.schema import BudgetConfig
from tuning.study.summary import WARM_FROM_ATTR, StudySummary, TrialSummary

# Trial user attributes: the epochs a running trial has claimed (trained + the one in progress),
# which budget ended a trial early (``budget.epochs`` / ``budget.minutes``), and the epochs a
# re-run took over from an interrupted trial's checkpoint (counted on that trial already).
EPOCHS_ATTR, STOPPED_BY_ATTR, RESUMED_ATTR = "budget_epochs", "stopped_by", "resumed_epochs"


@dataclass(frozen=True)
class Spent:
    """What a study's trials spent: ``epochs`` trained (or claimed), ``minutes`` of training,
    over ``trials`` trials, at most ``workers`` of them at once, ``ended_early`` by the budget."""

    epochs: int
    minutes: float
    trials: int
    workers: int
    ended_early: int


def trial_epochs(trial: TrialSummary) -> int:
    """Epochs ``trial`` trained, or (running) has claimed: its stored count once it ended, less
    those it took over from an interrupted trial's checkpoint."""
    resumed = int(trial.user_attrs.get(RESUMED_ATTR) or 0)
    if trial.state != "RUNNING" and trial.user_attrs.get("epochs_trained") is not None:
        return max(0, int(trial.user_attrs["epochs_trained"]) - resumed)
    claimed = trial.user_attrs.get(EPOCHS_ATTR)
    return max(0, max(len(trial.intermediate_values), int(claimed or 0)) - resumed)


def spent(trials: Iterable[TrialSummary], now: float | None = None) -> Spent:
    """The budget ``trials`` spent (a running trial's minutes up to ``now``)."""
    now = time.time() if now is None else now
    epochs, seconds, count, early = 0, 0.0, 0, 0
    spans: list[tuple[float, float]] = []
    for t in trials:
        if t.state == "WAITING" or t.user_attrs.get(WARM_FROM_ATTR) is not None:
            continue
        n = trial_epochs(t)
        if t.state == "RUNNING":
            seconds += max(0.0, now - t.start_time) if t.start_time is not None else 0.0
        else:
            seconds += t.seconds or 0.0
        if n == 0 and t.state == "FAIL":
            continue  # failed before training (its seconds count: the time was spent)
        count += 1
        early += t.user_attrs.get(STOPPED_BY_ATTR) is not None
        if t.start_time is not None:
            spans.append((t.start_time, now if t.state == "RUNNING" else t.start_time + (t.seconds or 0.0)))
        epochs += n
    return Spent(epochs, seconds / 60.0, count, max(1, _most_at_once(spans)), early)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most trials that ran at the same time: the workers (a resume is not one more)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in events:  # at equal times an end (-1) sorts first: back-to-back is not at once
        running += step
        most = max(most, running)
    return most


def exhausted(limits: BudgetConfig, used: Spent, *, claiming: bool = False) -> str | None:
    """The budget's key (``budget.epochs`` / ``budget.minutes``) when ``used`` reached it, else
    None. ``claiming``: ``used`` holds this trial's claim of its next epoch, so only more than
    the budget is too much."""
    if limits.epochs is not None and (
        used.epochs > limits.epochs or (not claiming and used.epochs >= limits.epochs)
    ):
        return "budget.epochs"
    if limits.minutes is not None and used.minutes >= limits.minutes:
        return "budget.minutes"
    return None


def spent_line(limits: BudgetConfig, summary: StudySummary) -> str | None:
    """``budget.epochs=40 spent: 40 epochs over 9 trials (2 workers); 3 trials ended early by the
    budget``, when the study spent its budget; None while some is left (or none is set)."""
    used = spent(summary.trials)
    key = exhausted(limits, used)
    if key is None:
        return None
    limit = limits.epochs if key == "budget.epochs" else f"{limits.minutes:g}"
    what = f"{used.epochs} epochs" if key == "budget.epochs" else f"{used.minutes:.2f} minutes"
    line = (
        f"{key}={limit} spent: {what} over {used.trials} trial{'' if used.trials == 1 else 's'} "
        f"({used.workers} worker{'' if used.workers == 1 else 's'})"
    )
    if used.ended_early:
        line += f"; {used.ended_early} trial{'' if used.ended_early == 1 else 's'} ended early by the budget"
    return line
