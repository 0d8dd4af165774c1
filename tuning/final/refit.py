"""The final model: refit the best trial's settings and evaluate it once on the test split.

Training goes through the trial's own pieces (``new_model``, ``targets``, ``fit_model``,
``fit_trial``), so the final model is built and fitted exactly as the search's models were.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuning.config import Settings, with_task
from tuning.config.space import Hyperparameters
from tuning.config.tasks import METRICS
from tuning.data import Dataset, load_dataset
from tuning.errors import ConfigError, DataError
from tuning.final.check import ScoreCheck, compare
from tuning.model.metrics import gap
from tuning.payload import Payload

if TYPE_CHECKING:  # TensorFlow is imported where a model is built or loaded, not for path checks
    import keras

    from tuning.model.result import FitResult


@dataclass
class FinalModel:
    """A trained final model, the data it came from and how it measures."""

    model: keras.Model
    dataset: Dataset
    hp: Hyperparameters
    refit: bool
    epochs: int
    seed: int
    result: FitResult
    test: dict[str, float]
    search: dict[str, Any]
    study: str
    info: dict[str, Any] = field(default_factory=dict)
    # The final model's score on its training rows beside the best trial's (None: an old best.yaml).
    check: ScoreCheck | None = None

    @property
    def table(self) -> pd.DataFrame:
        return comparison_table(self)


def refit_epochs(best_epoch: int, n_train: int, n_val: int, batch_size: int) -> int:
    """Epochs on train + validation that make as many weight updates as the best trial made
    up to its best epoch.

    The search found that ``best_epoch`` passes over ``n_train`` rows, i.e. ``best_epoch *
    ceil(n_train / batch_size)`` updates, generalize best. Early stopping regularizes through
    the number of updates (with a fixed learning rate it acts like an L2 penalty whose
    strength falls as updates grow: Goodfellow et al., Deep Learning, 7.8), so keeping the
    update count keeps the regularization the search chose. Each pass over the larger set
    makes more updates, hence fewer passes: never fewer than one.
    """
    updates = best_epoch * math.ceil(n_train / batch_size)
    per_epoch = math.ceil((n_train + n_val) / batch_size)
    return max(1, round(updates / per_epoch))


def check_columns(dataset: Dataset, hp: Hyperparameters, best: Payload, source: str) -> None:
    """Fail when the data is not what the best trial's model was made for.

    A best.yaml that lists its ``columns`` (and ``class_names``) is compared exactly; one that
    does not is compared through the best trial's parameter count, which follows from the
    number of features and classes.
    """
    columns = best.get("columns")
    if columns is not None and list(columns) != list(dataset.columns):
        raise DataError(
            "data",
            f"{source} was made for the columns {', '.join(map(str, columns))}; "
            f"this data has {', '.join(dataset.columns)}",
        )
    classes = best.get("class_names")
    if classes is not None and dataset.class_names is not None and list(classes) != dataset.class_names:
        raise DataError(
            "data",
            f"{source} was made for the classes {', '.join(map(str, classes))}; "
            f"this data has {', '.join(dataset.class_names)}",
        )
    expected = best.get("n_params")
    if isinstance(expected, int) and not isinstance(expected, bool):
        from tuning.model.fit import fresh_session, trainable_params
        from tuning.search.trial import new_model

        actual = trainable_params(new_model(hp, dataset))
        fresh_session()
        if actual != expected:
            raise DataError(
                "data",
                f"{source} was made for other columns: its best model had {expected} weights, this "
                f"data gives {actual} ({dataset.n_features} features from {', '.join(dataset.columns)})",
            )


def train_final(
    settings: Settings, hp: Hyperparameters, *, source: str = "best.yaml", checkpoints: Path | None = None
) -> FinalModel:
    """Load the data, train the final model as configured, and evaluate it once on the test split.

    ``final.refit`` true: a fresh model on train + validation for :func:`refit_epochs` epochs
    (or ``final.epochs``); false: exactly the trial (train split, early stopping on validation).
    The weights are seeded as the best trial's were: ``seed + best.trial``. ``checkpoints``: a
    folder where the fit saves its state each epoch and, interrupted, continues from it.
    """
    from tuning.model.fit import evaluate
    from tuning.search.trial import fit_trial, targets

    best = dict(settings.raw["best"])
    trial_seed = settings.seed + int(best["trial"])
    dataset = load_dataset(settings.data, settings.split, settings.seed)
    settings = with_task(settings, dataset.task)
    check_columns(dataset, hp, best, source)
    start = time.perf_counter()
    callbacks = [] if checkpoints is None else [_checkpoint(checkpoints, settings, hp, trial_seed)]
    if settings.final.refit:
        model, result, epochs = _refit(settings, hp, dataset, best, trial_seed, callbacks=callbacks)
    else:
        model, result = fit_trial(hp, dataset, settings.training, seed=trial_seed, callbacks=callbacks)
        epochs = result.epochs_trained
    if result.diverged_at is not None:
        raise ConfigError("final", f"the loss became NaN at epoch {result.diverged_at + 1}; nothing saved")
    # The one and only look at the test split.
    test = evaluate(model, dataset.x_test, targets(dataset.y_test, hp, dataset, model), hp.batch_size)
    if dataset.target_scaler is not None:  # saved and served in the target's units
        from tuning.model.build import in_target_units

        model = in_target_units(model, *dataset.target_units)
    return FinalModel(
        model=model,
        dataset=dataset,
        hp=hp,
        refit=settings.final.refit,
        epochs=int(epochs),
        seed=trial_seed,
        result=result,
        test=test,
        search=best,
        study=settings.study.name,
        info={"seconds": round(time.perf_counter() - start, 3), "sweep_seed": settings.seed},
        check=compare(best, result.train, result.val, refit=settings.final.refit),
    )


def _checkpoint(folder: Path, settings: Settings, hp: Hyperparameters, seed: int) -> Any:
    """The final fit's per-epoch checkpoint in ``folder/final``, keyed by what decides the fit
    (params, seed, data, split, training and final settings): an interrupted ``tuning train``
    run again with the same settings continues it; with other settings it starts anew."""
    import hashlib

    from tuning.search.checkpoints import final_checkpoint

    what = repr((hp.as_params(), seed, settings.data, settings.split, settings.training, settings.final))
    return final_checkpoint(folder / "final", hashlib.sha256(what.encode()).hexdigest()[:16])


def _refit(
    settings: Settings,
    hp: Hyperparameters,
    dataset: Dataset,
    best: Payload,
    seed: int,
    *,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any, int]:
    """A fresh model fitted on train + validation for ``final.epochs`` or :func:`refit_epochs`."""
    from tuning.model.fit import fit_model, fresh_session, seed_everything
    from tuning.search.trial import new_model, targets

    # cv.folds: best_epoch is the folds' mean, on folds of cv_train_rows rows each.
    n_fit = int(best.get("cv_train_rows") or len(dataset.y_train))
    n_all = len(dataset.y_train) + len(dataset.y_val)
    epochs = settings.final.epochs or refit_epochs(
        int(best["best_epoch"]), n_fit, n_all - n_fit, hp.batch_size
    )
    fresh_session()
    seed_everything(seed, settings.training.deterministic)
    model = new_model(hp, dataset, settings.training.steps_per_execution)
    x = np.concatenate([dataset.x_train, dataset.x_val])
    y = np.concatenate([dataset.y_train, dataset.y_val])
    result = fit_model(
        model,
        x,
        targets(y, hp, dataset, model),
        epochs=epochs,
        batch_size=hp.batch_size,
        patience=None,
        callbacks=callbacks,
    )
    return model, result, epochs


def comparison_table(final: FinalModel) -> pd.DataFrame:
    """Per metric: what the search saw (train, validation, their gap) beside the final model's
    training rows, validation (without refit), test and test gap. Gaps are positive when the
    second value is worse."""
    names = ("loss", *METRICS[final.dataset.task])
    search = final.search
    train_label = "final train+val" if final.refit else "final train"
    rows = {}
    for name in names:
        train = final.result.train.get(name, math.nan)
        row = {
            "search train": search.get(f"train_{name}", math.nan),
            "search val": search.get(f"val_{name}", math.nan),
            train_label: train,
        }
        if not final.refit:
            row["final val"] = final.result.val.get(name, math.nan)
        row["test"] = final.test.get(name, math.nan)
        row["search gap"] = search.get(f"gap_{name}", math.nan)
        row["test gap"] = gap(train, row["test"], name)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)
