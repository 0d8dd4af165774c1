"""Live progress: one line per finished trial with the best value so far."""

from __future__ import annotations

import logging
import math

from tuning.study.record import TrialRecord
from tuning.study.summary import StudySummary

log = logging.getLogger("tuning")


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


class Progress:
    """Logs ``[i/N] trial k STATE metric=v | best v (trial j) | epochs, seconds``.

    ``i`` counts the study's finished trials (COMPLETE or PRUNED) toward ``N``: a failed trial
    does not move it, and its line says so rather than repeating the count as if it had.
    """

    def __init__(self, n_trials: int, metric: str) -> None:
        self.n_trials = n_trials
        self.metric = metric

    def on_trial_end(self, study: StudySummary, record: TrialRecord) -> None:
        done = study.finished_count()
        top = study.best()
        best = f"best {_fmt(top.value)} (trial {top.number})" if top is not None else "no complete trial yet"
        epochs = len(record.history.get("loss", []))
        detail = f" ({record.error})" if record.state == "FAIL" and record.error else ""
        counter = (
            f"[{done}/{self.n_trials}]"
            if record.state != "FAIL"
            else f"[{done}/{self.n_trials}, not counted]"
        )
        log.info(
            f"{counter} trial {record.number} {record.state}{detail} "
            f"{self.metric}={_fmt(record.value)} | {best} | {epochs} epochs, {record.seconds:.1f}s"
        )
