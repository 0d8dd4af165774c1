"""Pure functions over a training history: overfitting gaps, divergence. No Keras import."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tuning.config.tasks import direction_of


def gap(train_value: float, val_value: float, metric: str) -> float:
    """How far validation lags training, positive when overfitting.

    For losses and errors: ``val - train``; for accuracy-like metrics: ``train - val``.
    """
    if direction_of(metric) == "maximize":
        return train_value - val_value
    return val_value - train_value


def gaps(train: Mapping[str, float], val: Mapping[str, float]) -> dict[str, float]:
    """``gap_<name>`` for every metric present in both ``train`` and ``val``."""
    return {f"gap_{k}": gap(train[k], val[k], k) for k in train if k in val}


def epoch_gaps(history: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Per-epoch ``gap_<name>`` series for every ``name`` with a ``val_<name>`` twin."""
    out: dict[str, list[float]] = {}
    for name, train_values in history.items():
        val_values = history.get(f"val_{name}")
        if name.startswith("val_") or val_values is None:
            continue
        out[f"gap_{name}"] = [gap(t, v, name) for t, v in zip(train_values, val_values, strict=True)]
    return out


def diverged(history: Mapping[str, Sequence[float]]) -> int | None:
    """First epoch whose training loss is not finite, or None."""
    for i, v in enumerate(history.get("loss", [])):
        if v is None or not math.isfinite(v):
            return i
    return None
