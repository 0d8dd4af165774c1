"""Is the final model as good as the trial it came from? One comparison, on the study's metric.

``tuning train`` refits the best trial's settings on train + validation; nothing guarantees the
refit reaches the trial's score (a trial still improving at its last epoch, a small network's
dependence on its start). This compares the final model's score on the rows it trained on with
the best trial's validation score, and says how far apart they may be before it is worth a
warning. Pure arithmetic: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from tuning.payload import Payload

# The smallest tolerance, relative to the trial's value: a trial whose gap is ~0 and that used no
# folds would otherwise warn on differences of a few thousandths (float sums in another order, one
# row of 120 flipping). 1% is far below what a real regression costs (issue 32: +22% log loss).
RELATIVE_FLOOR = 0.01


@dataclass(frozen=True)
class ScoreCheck:
    """The final model's score beside the best trial's validation score, on the study's metric.

    ``final`` is measured on the rows the final model trained on (train + validation for a refit;
    the validation split for a replay, which trains as the trial did). ``excess`` is how much
    worse it is (positive: worse, in the metric's own direction); ``noise`` how much worse it may
    be before that says something about the model rather than the rows (see :func:`noise_of`).
    """

    metric: str  # the study's metric, e.g. val_log_loss
    direction: str  # minimize | maximize
    search: float  # the best trial's value
    final: float  # the final model's value on its rows
    rows: str  # which rows ``final`` was measured on
    noise: float
    noise_from: str
    refit: bool

    @property
    def name(self) -> str:
        """The metric without its split prefix: ``log_loss``."""
        return self.metric.removeprefix("val_")

    @property
    def excess(self) -> float:
        diff = self.final - self.search
        return diff if self.direction == "minimize" else -diff

    @property
    def worse(self) -> bool:
        """Worse than the trial beyond noise."""
        return self.excess > self.noise

    def figures(self) -> str:
        """Both figures, the difference and the noise, in words."""
        return (
            f"{self.name} {self.final:.4f} on the {self.rows} vs the best trial's {self.metric} "
            f"{self.search:.4f} ({'worse' if self.excess > 0 else 'not worse'} by {abs(self.excess):.4f}; "
            f"noise {self.noise:.4f}: {self.noise_from})"
        )

    def line(self) -> str:
        """The summary line (not worse beyond noise), or the warning line with what to do."""
        if not self.worse:
            return f"final model vs its trial: {self.figures()}: within noise"
        todo = (
            "use final.refit=false to replay the trial (train split, early stopping: its validation score again)"
            if self.refit
            else "the replay did not reproduce the trial: check training.deterministic"
        )
        return f"warning: the final model is worse than its trial: {self.figures()}; {todo}"

    def metrics(self) -> dict[str, float]:
        """The comparison as numbers (MLflow metrics, meta.json)."""
        return {
            "check_search_value": self.search,
            "check_final_value": self.final,
            "check_excess": self.excess,
            "check_noise": self.noise,
            "check_worse": float(self.worse),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "rows": self.rows, "noise_from": self.noise_from, **self.metrics()}


def noise_of(best: Payload, name: str, value: float) -> tuple[float, str]:
    """How much worse than the trial's validation score the final model may be, and from what.

    The two figures come from different rows: the trial's from its validation rows, the final
    model's from the rows it trained on. How much one model's score moves between two sets of
    rows, the study has measured for this very trial: its gap (validation minus train at the same
    weights), so a difference up to |gap| can be the rows' doing. A final model as good as the
    trial scores about the trial's *train* value on rows it trained on, better than its validation
    value, so this errs towards silence, never towards hiding a model worse than both. With
    ``cv.folds`` the folds' spread of the validation score (``cv_std``: other rows, other starts)
    is the run-to-run noise, and may be the larger. The floor is :data:`RELATIVE_FLOOR`.
    """
    candidates = [(RELATIVE_FLOOR * abs(value), f"{RELATIVE_FLOOR:.0%} of the trial's value")]
    gap = best.get(f"gap_{name}")
    if _finite(gap):
        candidates.append((abs(float(gap)), f"the trial's train/validation gap gap_{name}"))
    spread = best.get("cv_std")
    if _finite(spread):
        candidates.append((float(spread), f"the spread over its {best.get('cv_folds')} folds, cv_std"))
    return max(candidates, key=lambda c: c[0])


def compare(
    best: Payload, train: Mapping[str, float], val: Mapping[str, float], *, refit: bool
) -> ScoreCheck | None:
    """The check for a final model whose metrics on its training rows are ``train`` (and, without
    refit, on the validation split ``val``). None when best.yaml lacks the trial's value (written
    before it was kept) or the metric was not measured."""
    metric, direction, search = best.get("metric"), best.get("direction"), best.get("value")
    if not isinstance(metric, str) or direction not in ("minimize", "maximize") or not _finite(search):
        return None
    name = metric.removeprefix("val_")
    final = (train if refit else val).get(name)
    if not _finite(final):
        return None
    noise, noise_from = noise_of(best, name, float(search))
    return ScoreCheck(
        metric=metric,
        direction=str(direction),
        search=float(search),
        final=float(final),
        rows="train+validation rows it trained on" if refit else "validation split, as the trial",
        noise=noise,
        noise_from=noise_from,
        refit=refit,
    )


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
