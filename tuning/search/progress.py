"""Live progress: one line per finished trial with the best value so far."""

from __future__ import annotations

import logging
import math

from tuning.study.record import TrialRecord
from tuning.study.summary import StudySummary

log = logging.getLogger("tuning")


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _value(record: TrialRecord) -> str:
    """The trial's value; under cv.folds, the folds' mean with their spread: ``0.4123 ± 0.0210 (3 folds)``."""
    spread, folds = record.extras.get("cv_std"), record.extras.get("cv_folds")
    if spread is None or not folds:
        return _fmt(record.value)
    mean = _fmt(record.value)  # the spread to the mean's decimals: 0.4123 ± 0.0210
    std = _fmt(float(spread)) if "e" in mean else f"{float(spread):.{len(mean.partition('.')[2])}f}"
    return f"{mean} ± {std} ({folds} folds)"


class Progress:
    """Logs ``[i/N] trial k STATE metric=v | best v (trial j) | epochs, seconds``; under cv.folds
    ``v`` is the folds' mean and their spread (standard deviation).

    ``i`` counts the study's finished trials (COMPLETE or PRUNED) toward ``N``: a failed trial
    does not move it, and its line says so rather than repeating the count as if it had.
    """

    def __init__(self, n_trials: int | None, metric: str) -> None:  # None: a budget ends the study
        self.n_trials = n_trials
        self.metric = metric

    def on_trial_end(self, study: StudySummary, record: TrialRecord) -> None:
        done = study.finished_count()
        top = study.best()
        best = f"best {_fmt(top.value)} (trial {top.number})" if top is not None else "no complete trial yet"
        epochs = len(record.history.get("loss", []))
        detail = f" ({record.error})" if record.state == "FAIL" and record.error else ""
        total = f"{done}" if self.n_trials is None else f"{done}/{self.n_trials}"
        counter = f"[{total}]" if record.state != "FAIL" else f"[{total}, not counted]"
        log.info(
            f"{counter} trial {record.number} {record.state}{detail} "
            f"{self.metric}={_value(record)} | {best} | {epochs} epochs, {record.seconds:.1f}s"
        )
