"""What a fit produced, and the objective read from it: plain values, no Keras (a rehearsal's
simulated fit and the cross-validation mean are the same record as a real fit's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class FitResult:
    """What one fit produced, measured at the weights it ended with (the best ones)."""

    history: dict[str, list[float]]
    best_epoch: int
    epochs_trained: int
    early_stopped: bool
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    gaps: dict[str, float] = field(default_factory=dict)
    n_params: int = 0
    seconds: float = 0.0
    diverged_at: int | None = None


def objective_value(result: FitResult, metric: str) -> float:
    """The objective at the restored weights: ``val_x`` from validation, ``x`` from training."""
    if metric.startswith("val_"):
        return result.val.get(metric.removeprefix("val_"), math.nan)
    return result.train.get(metric, math.nan)
