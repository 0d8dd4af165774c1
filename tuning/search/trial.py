"""Run one trial end to end: hyperparameters -> model -> fit. Engine-neutral; final training reuses it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tuning.data import Dataset
from tuning.model.build import build_model, needs_one_hot
from tuning.model.fit import EpochLog, FitResult, fit_model, fresh_session, seed_everything
from tuning.model.tasks import resolve_metric
from tuning.search.space import Hyperparameters


def effective_epochs(hp: Hyperparameters, max_epochs: int | None) -> int:
    """The sampled epochs, capped by ``training.max_epochs`` when set."""
    return min(hp.epochs, max_epochs) if max_epochs else hp.epochs


def targets(y: np.ndarray, hp: Hyperparameters, dataset: Dataset) -> np.ndarray:
    """What the model trains on: class indices, one-hot rows when the loss is a (non-sparse)
    categorical one, or the standardized regression target."""
    if needs_one_hot(hp.loss, dataset.task):
        return keras.utils.to_categorical(y, dataset.n_classes).astype(np.float32)
    if dataset.target_scaler is not None:
        return dataset.target_scaler.transform(y.reshape(-1, 1)).reshape(-1).astype(np.float32)
    return y


def new_model(hp: Hyperparameters, dataset: Dataset, steps_per_execution: int = 1) -> keras.Model:
    return build_model(
        dataset.n_features,
        dataset.task,
        dataset.n_classes,
        units=hp.units,
        activation=hp.activation,
        dropout=hp.dropout,
        optimizer=hp.optimizer,
        learning_rate=hp.learning_rate,
        loss=hp.loss,
        steps_per_execution=steps_per_execution,
        target_units=dataset.target_units,
    )


def run_trial(
    hp: Hyperparameters,
    dataset: Dataset,
    training: Mapping[str, Any],
    *,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    epoch_log: EpochLog | None = None,
) -> tuple[keras.Model, FitResult]:
    """Build a fresh model for ``hp`` and fit it on train, early-stopping on validation.

    Args:
        training: the ``training`` config (``max_epochs``, ``early_stopping``,
            ``steps_per_execution``, ``deterministic``).
        seed: seeds weights, dropout and shuffling for this trial.
        callbacks: extra Keras callbacks (e.g. the engine's pruning callback).
        epoch_log: collects epoch logs even if a callback aborts the fit.
    """
    fresh_session()
    seed_everything(seed, bool(training.get("deterministic", True)))
    stopping = training["early_stopping"]
    model = new_model(hp, dataset, int(training.get("steps_per_execution", 1)))
    result = fit_model(
        model,
        dataset.x_train,
        targets(dataset.y_train, hp, dataset),
        validation=(dataset.x_val, targets(dataset.y_val, hp, dataset)),
        epochs=effective_epochs(hp, training.get("max_epochs")),
        batch_size=hp.batch_size,
        monitor=resolve_metric(str(stopping["monitor"]), dataset.task),
        patience=stopping.get("patience"),
        min_delta=float(stopping.get("min_delta", 0.0)),
        callbacks=callbacks,
        epoch_log=epoch_log,
    )
    return model, result


def objective_value(result: FitResult, metric: str) -> float:
    """The objective at the restored weights: ``val_x`` from validation, ``x`` from training."""
    if metric.startswith("val_"):
        return result.val.get(metric.removeprefix("val_"), math.nan)
    return result.train.get(metric, math.nan)
