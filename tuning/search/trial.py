"""Run one trial end to end: hyperparameters -> model -> fit. Engine-neutral; final training reuses it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tuning.config.schema import TrainingConfig
from tuning.config.space import FixedParams, Hyperparameters, Suggester
from tuning.config.space_config import CUSTOM_SETTINGS
from tuning.config.tasks import resolve_metric
from tuning.data import Dataset
from tuning.model.build import compile_model, mlp, needs_one_hot
from tuning.model.fit import EpochLog, fit_model, fresh_session, seed_everything
from tuning.model.result import FitResult


class EpochEndCallback(keras.callbacks.Callback):
    """Hands each epoch's logs (epoch numbered from 0) to ``epoch_end``: the search loop's
    interrupt check and pruning report, the same plain callable a rehearsal calls. What it
    raises (``TrialPruned``, the command's Ctrl-C / SIGTERM, which Python's raise from the
    signal handler may have lost in TensorFlow's gc hook) stops the fit."""

    def __init__(self, epoch_end: Callable[[int, Mapping[str, float]], None]) -> None:
        super().__init__()
        self.epoch_end = epoch_end

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})


def effective_epochs(hp: Hyperparameters, max_epochs: int | None) -> int:
    """The sampled epochs, capped by ``training.max_epochs`` when set."""
    return min(hp.epochs, max_epochs) if max_epochs else hp.epochs


def targets(
    y: np.ndarray, hp: Hyperparameters, dataset: Dataset, model: keras.Model | None = None
) -> np.ndarray:
    """What the model trains on: class indices, one-hot rows when the loss is a (non-sparse)
    categorical one, or the standardized regression target. A custom model's loss is read
    from ``model`` itself."""
    if hp.builder is not None:
        from tuning.model.custom import one_hot_labels

        if model is None:
            raise ValueError("targets() of a custom model needs the model")
        one_hot = one_hot_labels(model, dataset.task)
    else:
        one_hot = needs_one_hot(hp.loss, dataset.task)
    if one_hot:
        one_hot_rows: np.ndarray = keras.utils.to_categorical(y, dataset.n_classes).astype(np.float32)
        return one_hot_rows
    if dataset.target_scaler is not None:
        scaled: np.ndarray = dataset.target_scaler.transform(y.reshape(-1, 1)).reshape(-1).astype(np.float32)
        return scaled
    return y


def new_model(  # noqa: PLR0913 - keyword-only options
    hp: Hyperparameters,
    dataset: Dataset,
    steps_per_execution: int = 1,
    *,
    suggester: Suggester | None = None,
    drawn: dict[str, Any] | None = None,
    kept_models: int = 0,
) -> keras.Model:
    """The MLP of ``hp``, or for a custom model its builder's model: its hyperparameters drawn
    through ``suggester`` (the engine's trial) or, without one, replayed from ``hp.extra``.
    ``drawn`` receives the builder's values even when the build fails. ``kept_models`` > 0: the MLP
    is the kept compiled model of its structure, in the state a fresh one would have
    (``tuning.model.reuse``, at most that many kept), where the backend allows it."""
    if hp.builder is not None:
        from tuning.model.builder import load_builder
        from tuning.model.custom import build_custom
        from tuning.model.hp import HyperParameters

        values = HyperParameters(
            suggester if suggester is not None else FixedParams(hp.extra),
            builder=hp.builder,
            reserved=CUSTOM_SETTINGS,
        )
        try:
            return build_custom(load_builder(hp.builder), values, dataset, steps_per_execution)
        finally:
            if drawn is not None:
                drawn.update(values.sampled)
    model = mlp(
        dataset.n_features,
        dataset.task,
        dataset.n_classes,
        units=hp.units,
        activation=hp.activation,
        dropout=hp.dropout,
    )
    if kept_models > 0 and why_not_kept(hp) is None:
        return _kept_model(model, hp, dataset, steps_per_execution, kept_models)
    compile_model(
        model,
        dataset.task,
        optimizer=hp.optimizer,
        learning_rate=hp.learning_rate,
        loss=hp.loss,
        steps_per_execution=steps_per_execution,
        target_units=dataset.target_units,
    )
    return model


def _kept_model(
    fresh: keras.Model, hp: Hyperparameters, dataset: Dataset, steps_per_execution: int, keep: int
) -> keras.Model:
    """The kept compiled model of ``hp``'s structure, holding ``fresh``'s initial state."""
    from tuning.model.reuse import Structure, reused_model

    structure = Structure(
        n_features=dataset.n_features,
        task=dataset.task,
        n_classes=dataset.n_classes,
        depth=hp.n_layers,
        width=Structure.width_for(hp.units),
        activation=hp.activation,
        optimizer=hp.optimizer,
        loss=hp.loss,
        steps_per_execution=steps_per_execution,
        target_units=dataset.target_units,
    )
    return reused_model(
        fresh, structure, units=hp.units, dropout=hp.dropout, learning_rate=hp.learning_rate, keep=keep
    )


def why_not_kept(hp: Hyperparameters) -> str | None:
    """Why ``hp``'s model cannot be a kept compiled one (``training.kept_models``), or None."""
    if hp.builder is not None:
        return "model=custom: each trial builds its own model (training.kept_models is for the built-in MLP)"
    if min(hp.units) < 2:  # Keras adds a one-unit bias with another op (model/reuse.py)
        return "a hidden layer of one unit: each trial builds its own model"
    if keras.backend.backend() != "tensorflow":
        return (
            f"training.kept_models needs the TensorFlow backend, not {keras.backend.backend()}: "
            "each trial builds its own model"
        )
    return None


def probe_builder(builder: str, dataset: Dataset, steps_per_execution: int = 1) -> dict[str, Any]:
    """Build a custom model once with its hyperparameters' defaults, before any study exists:
    an unimportable builder, one that raises, returns no compiled ``keras.Model`` or a model
    whose output does not fit the task is one ``ConfigError`` line. Returns the values it drew."""
    from tuning.errors import ConfigError, TrialFailed
    from tuning.model.builder import load_builder
    from tuning.model.custom import build_custom
    from tuning.model.hp import HyperParameters

    loaded = load_builder(builder)
    values = HyperParameters(None, builder=builder, reserved=CUSTOM_SETTINGS)
    fresh_session()
    try:
        build_custom(loaded, values, dataset, steps_per_execution)
    except TrialFailed as err:
        raise ConfigError("model.build", f"{err} (with each hp's default: {values.values})") from None
    finally:
        fresh_session()
    return dict(values.values)


def fit_trial(  # noqa: PLR0913 - keyword-only options
    hp: Hyperparameters,
    dataset: Dataset,
    training: TrainingConfig,
    *,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    epoch_log: EpochLog | None = None,
    suggester: Suggester | None = None,
    drawn: dict[str, Any] | None = None,
    kept_models: int = 0,
) -> tuple[keras.Model, FitResult]:
    """Build a fresh model for ``hp`` and fit it on train, early-stopping on validation.

    Args:
        training: how every trial trains (epoch cap, early stopping, speed settings).
        seed: seeds weights, dropout and shuffling for this trial.
        callbacks: extra Keras callbacks (e.g. the engine's pruning callback).
        epoch_log: collects epoch logs even if a callback aborts the fit.
        suggester, drawn: a custom model's hyperparameters, drawn while it builds (``new_model``).
        kept_models: > 0, train the kept compiled model of the MLP's structure, at most that many
            kept (``training.kept_models``); the returned model is then that shared one, valid
            until the next trial.
    """
    fresh_session()
    seed_everything(seed, training.deterministic)
    stopping = training.early_stopping
    model = new_model(
        hp, dataset, training.steps_per_execution, suggester=suggester, drawn=drawn, kept_models=kept_models
    )
    result = fit_model(
        model,
        dataset.x_train,
        targets(dataset.y_train, hp, dataset, model),
        validation=(dataset.x_val, targets(dataset.y_val, hp, dataset, model)),
        epochs=effective_epochs(hp, training.max_epochs),
        batch_size=hp.batch_size,
        monitor=resolve_metric(stopping.monitor, dataset.task),
        patience=stopping.patience,
        min_delta=stopping.min_delta,
        callbacks=callbacks,
        epoch_log=epoch_log,
    )
    result.n_params = getattr(model, "n_params", result.n_params)  # a kept model's are wider
    return model, result
