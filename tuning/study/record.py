"""What a finished trial hands to observers (progress, tracking). No TensorFlow import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuning.config.space import Hyperparameters

if TYPE_CHECKING:
    from tuning.model.result import FitResult


@dataclass
class TrialRecord:
    """One trial, whatever its state: parameters, per-epoch history, result or error."""

    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    hyperparameters: Hyperparameters
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)
    value: float | None = None
    result: FitResult | None = None
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # cv.folds: fold values and their std
    start_time: float = 0.0
    seconds: float = 0.0
