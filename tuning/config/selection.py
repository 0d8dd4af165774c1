"""The ``selection`` group and ``cv.folds``: which rule picks the study's trial, checked against
the engine and sampler (the rules themselves: ``tuning.study.selection``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuning.errors import ConfigError
from tuning.payload import RawConfig

MODES = ("best", "constrained", "pareto")
# Study user attribute holding the selection the study was made with.
SELECTION_ATTR = "selection"
# Samplers that cannot optimize two objectives (Optuna's CMA-ES is single-objective).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
# Engines that can run a constrained or multi-objective study.
SELECTION_ENGINES = ("optuna",)


@dataclass(frozen=True)
class Selection:
    """``mode``: best | constrained | pareto; ``max_gap``: the gap limit (constrained), or the
    gap tolerance of the pick from the Pareto front (pareto; None: the front's best score)."""

    mode: str = "best"
    max_gap: float | None = None

    def as_attr(self) -> dict[str, Any]:
        return {"mode": self.mode, "max_gap": self.max_gap}

    @classmethod
    def from_attr(cls, value: Any) -> Selection:
        if not isinstance(value, Mapping) or value.get("mode") not in MODES:
            return cls()
        gap = value.get("max_gap")
        return cls(str(value["mode"]), None if gap is None else float(gap))


def parse_selection(cfg: RawConfig) -> Selection:
    """The ``selection`` group checked against the engine and sampler (no data needed).

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    section = cfg.get("selection") or {"name": "best"}
    mode = section.get("name", "best")
    if mode not in MODES:
        raise ConfigError("selection", f"'{mode}' is not one of: {', '.join(MODES)}")
    gap = section.get("max_gap")
    if gap is not None and (
        isinstance(gap, bool) or not isinstance(gap, int | float) or not math.isfinite(gap)
    ):
        raise ConfigError("selection.max_gap", f"{gap!r}; must be a number >= 0 or null")
    if gap is not None and gap < 0:
        raise ConfigError("selection.max_gap", f"{gap} is below 0; the gap limit must be >= 0")
    if mode == "constrained" and gap is None:
        raise ConfigError("selection.max_gap", "is required with selection=constrained; e.g. 0.05")
    engine = str((cfg.get("engine") or {}).get("name", "optuna"))
    if mode != "best" and engine not in SELECTION_ENGINES:
        raise ConfigError(
            "selection",
            f"{mode} needs engine={' or '.join(SELECTION_ENGINES)}; engine={engine} supports selection=best only",
        )
    sampler = str((cfg.get("sampler") or {}).get("name", ""))
    if mode == "pareto" and sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise ConfigError(
            "sampler",
            f"{sampler} optimizes one objective; selection=pareto needs sampler=tpe, nsga2, random, qmc or gp",
        )
    return Selection(str(mode), None if gap is None else float(gap))


def check_folds(cfg: RawConfig) -> int | None:
    """``cv.folds``: None (off) or an integer >= 2. The class-count limit is checked on the data."""
    folds = (cfg.get("cv") or {}).get("folds")
    if folds is None:
        return None
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError("cv.folds", f"{folds!r}; must be an integer >= 2, or null for one validation split")
    return folds
