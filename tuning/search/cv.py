"""k-fold scores for one trial (``cv.folds``): train on each fold, combine what the folds measured.

The trial's value is the mean over folds of ``study.metric`` at each fold's restored best
weights; every headline number (train, val, gaps) is the mean too, so value and gap stay on one
scale with single-split studies. Pruning sees the first fold only, per epoch: every trial's
first fold holds the same rows (the folds are seeded by the sweep's seed), so the pruner compares
like with like, and a hopeless trial stops before it trains the other k-1 folds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuning.config.schema import TrainingConfig
from tuning.config.space import Hyperparameters, Suggester
from tuning.data import Dataset
from tuning.errors import TrialFailed
from tuning.model.fit import EpochLog
from tuning.model.result import FitResult, objective_value
from tuning.search.trial import fit_trial


def cross_validate(  # noqa: PLR0913 - keyword-only options passed through to each fold's trial
    hp: Hyperparameters,
    folds: Sequence[Dataset],
    training: TrainingConfig,
    *,
    seed: int,
    metric: str,
    callbacks: Sequence[Any] = (),
    epoch_log: EpochLog | None = None,
    suggester: Suggester | None = None,
    drawn: dict[str, Any] | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """Fit ``hp`` on every fold (early stopping on the fold's validation rows).

    Returns the folds' mean as one ``FitResult`` (``history``: the first fold's epochs, the ones
    the pruner saw; ``best_epoch``: the folds' mean, which the final refit uses) and the
    per-fold attributes: ``cv_values``, ``cv_std``, ``cv_best_epochs``, ``cv_train_rows``.
    A fold whose loss became NaN or whose value is not finite fails the whole trial.
    """
    results: list[FitResult] = []
    values: list[float] = []
    for k, fold in enumerate(folds):
        _, result = fit_trial(
            hp,
            fold,
            training,
            seed=seed,
            callbacks=callbacks if k == 0 else (),
            epoch_log=epoch_log if k == 0 else None,
            suggester=suggester,  # a custom model's builder asks the same names in every fold
            drawn=drawn,
            kept_models=training.kept_models,
        )
        if result.diverged_at is not None:
            raise TrialFailed(f"loss became NaN at epoch {result.diverged_at + 1} of fold {k + 1}")
        value = objective_value(result, metric)
        if not math.isfinite(value):
            raise TrialFailed(f"{metric} is {value} in fold {k + 1}")
        results.append(result)
        values.append(float(value))
    best_epochs = [r.best_epoch + 1 for r in results]
    combined = dataclasses.replace(
        results[0],
        best_epoch=max(1, round(float(np.mean(best_epochs)))) - 1,
        epochs_trained=round(float(np.mean([r.epochs_trained for r in results]))),
        early_stopped=any(r.early_stopped for r in results),
        train=_mean([r.train for r in results]),
        val=_mean([r.val for r in results]),
        gaps=_mean([r.gaps for r in results]),
        seconds=sum(r.seconds for r in results),
    )
    extras = {
        "cv_folds": len(folds),
        "cv_values": values,
        "cv_std": float(np.std(values)),  # ddof=0, as scikit-learn's std_test_score
        "cv_best_epochs": best_epochs,
        # Rows each fold trained on: the final refit scales the folds' epochs by it (same updates).
        "cv_train_rows": round(float(np.mean([len(f.y_train) for f in folds]))),
    }
    return combined, extras


def _mean(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: float(np.mean([p[k] for p in parts])) for k in keys}
