"""Train one model with its callbacks and measure it at the restored best weights."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tuning.config.tasks import direction_of
from tuning.model.metrics import diverged, gaps
from tuning.model.result import FitResult

_determinism_on = False
_long_lived_frozen = False


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow ops deterministic once per process."""
    global _determinism_on  # noqa: PLW0603 - op determinism is process-wide: switched on once
    keras.utils.set_random_seed(seed)
    if deterministic and not _determinism_on and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        _determinism_on = True


def fresh_session() -> None:
    """Drop the previous trial's graph and layers so memory stays flat across trials."""
    global _long_lived_frozen  # noqa: PLW0603 - gc.freeze() once per process, at the first trial
    _forget_custom_gradients()
    keras.backend.clear_session()  # runs gc.collect() itself: a second one would cost as much again
    # Keras prints its notes (TerminateOnNaN's "Batch 31: Invalid loss, terminating training")
    # unless told to log them, and clear_session() forgets being told. We show no progress bars
    # (verbose=0), so nothing else changes; logged, they reach the run's log file (tuning.logs).
    keras.config.disable_interactive_logging()
    if not _long_lived_frozen:
        # Objects alive at the first trial (modules, data, study) live as long as the process: kept
        # out of later collections, which then scan only what trials made (~0.5 s -> ~0.1 s each).
        gc.freeze()
        _long_lived_frozen = True


def _forget_custom_gradients() -> None:
    """Unregister the gradient functions TensorFlow recorded while tracing earlier trials.

    Keras' TensorFlow optimizer sums gradients through ``tf.custom_gradient``, which registers a
    gradient function in a process-wide registry at every trace and never removes it, keeping
    each trial's train graph alive (~2.5 MB a trial). The registry is read only while a graph
    is differentiated, i.e. while the next trial traces its own train step.

    What it buys: experiments/benchmarks/memory.py, +3.3 MB resident per trial without it, +7.5 MB
    over trials 10-100 with it (README, Performance). It is the one private TensorFlow API used
    here; tests/model/test_fit_registry.py fails when TensorFlow moves it, so the saving cannot be lost
    silently on an upgrade. No public route exists: the leak is TensorFlow's own
    (tensorflow/tensorflow#97697, its fix #107094 closed unmerged), and the fix proposed for
    tf-keras does this same purge in ``clear_session`` (keras-team/tf-keras#898, open). Drop this
    when TensorFlow stops capturing the graph in the registered closure.
    """
    if keras.backend.backend() != "tensorflow":
        return
    registry = _gradient_registry()
    if registry is None:
        return
    for name in [n for n in registry if n.startswith("CustomGradient-")]:
        del registry[name]


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's private gradient registry (a dict by op name), or None where it moved."""
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return None
    return registry if isinstance(registry, dict) else None


class EpochLog(keras.callbacks.Callback):
    """Keeps every epoch's logs as they arrive, so a pruned or interrupted fit keeps its history.

    (Keras' own History callback runs last and misses the epoch in which another callback
    raised, e.g. Optuna's pruning callback.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))


class Resumable(keras.callbacks.Callback):
    """A callback that continues a fit from a checkpoint (``tuning.search.checkpoints``):
    ``fit_model`` starts Keras at its ``initial_epoch``, runs it after ``EarlyStopping`` (so it
    sees each epoch's end once every other callback has, and its ``on_train_begin`` comes after
    the stopper's reset), and hands it the model, the stopper and the epoch log first."""

    initial_epoch: int = 0

    def attach(self, model: keras.Model, stopper: keras.callbacks.Callback | None, log: EpochLog) -> None:
        """Called once before ``model.fit``: restore what the checkpoint holds."""


def fit_model(  # noqa: PLR0913 - keyword-only options, as Model.fit's and EarlyStopping's own
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    monitor: str = "val_loss",
    patience: int | None = 10,
    min_delta: float = 0.0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    epoch_log: EpochLog | None = None,
) -> FitResult:
    """Fit with ``EarlyStopping`` (best weights restored) and ``TerminateOnNaN``.

    ``patience=None`` (or no ``validation``) trains all ``epochs``. After training, the train
    metrics are evaluated at the final weights (the restored best ones), without dropout; the
    validation metrics are those Keras measured at the end of ``best_epoch``, the epoch those
    weights come from; then their gaps are taken. A ``Resumable`` among ``callbacks`` continues
    the fit from its checkpoint's epoch.
    """
    start = time.perf_counter()
    log = epoch_log or EpochLog()
    stopper = None if validation is None else early_stopping(monitor, patience, min_delta)
    cbs, initial_epoch = _arranged(model, callbacks, log, stopper)
    model.fit(
        x_train,
        y_train,
        validation_data=validation,
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        callbacks=cbs,
        verbose=0,
        shuffle=True,
        steps_per_epoch=steps(len(x_train), batch_size),
        validation_steps=steps(len(validation[0]), batch_size) if validation is not None else None,
    )
    history = log.history
    n_epochs = len(history.get("loss", []))
    nan_at = diverged(history)
    # The epoch whose weights the model now holds: EarlyStopping's own record of what it restored
    # (it honours min_delta and baseline); without it, the weights are the last epoch's.
    restored = stopper is not None and stopper.best_weights is not None
    result = FitResult(
        history=history,
        best_epoch=stopper.best_epoch if stopper is not None and restored else n_epochs - 1,
        epochs_trained=n_epochs,
        early_stopped=bool(stopper is not None and stopper.stopped_epoch > 0),
        n_params=trainable_params(model),
        diverged_at=nan_at,
    )
    if nan_at is None:
        result.train = evaluate(model, x_train, y_train, batch_size)
        if validation is not None:
            result.val = validation_at(history, result.best_epoch)
            result.gaps = gaps(result.train, result.val)
    result.seconds = time.perf_counter() - start
    return result


def _arranged(
    model: keras.Model,
    callbacks: Sequence[keras.callbacks.Callback],
    log: EpochLog,
    stopper: keras.callbacks.Callback | None,
) -> tuple[list[keras.callbacks.Callback], int]:
    """The fit's callbacks in order and its first epoch: a ``Resumable`` is attached, runs last
    and sets where the fit starts."""
    resumable = [cb for cb in callbacks if isinstance(cb, Resumable)]
    others = [cb for cb in callbacks if not isinstance(cb, Resumable)]
    for cb in resumable:
        cb.attach(model, stopper, log)
    cbs = [log, *others, keras.callbacks.TerminateOnNaN(), *([stopper] if stopper else []), *resumable]
    return cbs, max((cb.initial_epoch for cb in resumable), default=0)


def steps(n_rows: int, batch_size: int) -> int:
    """Batches per epoch, given to ``fit`` as Keras would infer them.

    Without a step count Keras makes two tf.data iterators per epoch for each of training and
    validation (one at the start, one at the end that the next epoch throws away), ~25 ms each.
    The exact counts keep the same batches, in the same order: ~20% less time per epoch on small
    data, identical updates (tested).
    """
    return math.ceil(n_rows / batch_size)


def early_stopping(monitor: str, patience: int | None, min_delta: float) -> keras.callbacks.Callback | None:
    """Keras's ``EarlyStopping`` on ``monitor``, best weights restored; None for ``patience=None``."""
    if patience is None:
        return None
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=patience,
        min_delta=min_delta,
        mode="max" if direction_of(monitor) == "maximize" else "min",
        restore_best_weights=True,
    )


def validation_at(history: dict[str, list[float]], epoch: int) -> dict[str, float]:
    """The validation metrics Keras measured at the end of ``epoch``.

    The model holds that epoch's weights (restored), so these are the validation metrics at
    those weights: read, not evaluated a second time (~0.1 s a trial).
    """
    return {name.removeprefix("val_"): v[epoch] for name, v in history.items() if name.startswith("val_")}


def trainable_params(model: keras.Model) -> int:
    """The weights training updates (a frozen layer's or a BatchNorm statistic are not counted)."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
    """Loss and compiled metrics on ``(x, y)``, dropout off."""
    # A large batch: evaluation has no updates, so the batch size only changes speed.
    values = model.evaluate(x, y, batch_size=max(batch_size, 1024), verbose=0, return_dict=True)
    return {k: float(v) for k, v in values.items()}
