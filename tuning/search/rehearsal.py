"""Rehearsal: a sweep whose epochs sleep and report a known function of the trial's params.

With ``training.simulate_epoch_seconds=S`` everything else of a sweep is real (config, data,
sampler, pruner, study, heartbeats, workers, MLflow, best.yaml); each epoch sleeps ``S`` seconds
and its logs come from a smooth test function over the search space, shaped like a learning
curve (fast, then flat, then a slow climb of the validation loss: early stopping and pruning
act as on a real fit). Same params, same values. No TensorFlow or Keras is imported, so a
cluster's bookkeeping (store, tracking, workers) can be measured before any GPU is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from tuning.config.schema import TrainingConfig
from tuning.config.space import Hyperparameters
from tuning.config.tasks import METRICS, direction_of
from tuning.errors import ConfigError
from tuning.model.metrics import gaps
from tuning.model.result import FitResult

# The line a rehearsal starts with (the log) and the MLflow tag its runs carry.
REHEARSAL_LINE = (
    "rehearsal: training.simulate_epoch_seconds={seconds:g}: no model is trained; each epoch sleeps "
    "and reports a made-up value (best.yaml is marked and `tuning train` refuses it)"
)
REHEARSAL_TAG = "tuning.rehearsal"

# How much worse than the best each category ends (a made-up but fixed landscape).
ACTIVATION_COST = {"relu": 0.0, "gelu": 0.01, "silu": 0.01, "swish": 0.01, "elu": 0.03, "tanh": 0.08}
OPTIMIZER_COST = {"adam": 0.0, "adamw": 0.0, "nadam": 0.02, "rmsprop": 0.05, "sgd": 0.2}

EpochEnd = Callable[[int, Mapping[str, float]], None]


def check_rehearsal(training: TrainingConfig, builder: str | None, folds: int | None) -> None:
    """A rehearsal simulates the built-in MLP on one split: a custom model or ``cv.folds`` is
    one ``ConfigError`` line."""
    if training.simulate_epoch_seconds is None:
        return
    if builder is not None:
        raise ConfigError(
            "training.simulate_epoch_seconds",
            "a rehearsal simulates the built-in MLP, not model=custom; allowed: model=mlp, or null",
        )
    if folds:
        raise ConfigError(
            "training.simulate_epoch_seconds",
            f"a rehearsal simulates one split, not cv.folds={folds}; allowed: cv.folds=null, or null",
        )


def penalty(hp: Hyperparameters) -> float:
    """How far ``hp`` is from the landscape's optimum (0 at lr 3e-3, dropout 0.15, two layers of
    64, batch 32, relu, adam); every term is smooth in its parameter."""
    width = sum(hp.units) / max(len(hp.units), 1)
    return (
        (math.log10(hp.learning_rate) + 2.5) ** 2 / 2.0
        + 3.0 * (hp.dropout - 0.15) ** 2
        + math.log2(max(width, 1.0) / 64.0) ** 2 / 16.0
        + 0.05 * (len(hp.units) - 2) ** 2
        + 0.02 * math.log2(hp.batch_size / 32.0) ** 2
        + ACTIVATION_COST.get(hp.activation, 0.1)
        + OPTIMIZER_COST.get(hp.optimizer, 0.1)
    )


def epoch_logs(hp: Hyperparameters, epoch: int, task: str) -> dict[str, float]:
    """The logs of ``epoch`` (from 0): loss and the task's metrics, train and ``val_``."""
    floor = 0.2 + penalty(hp)
    # A higher learning rate learns faster; too high a one is already in the penalty.
    pace = min(max(3.0 * 10 ** (-2.5 - math.log10(hp.learning_rate)), 0.5), 40.0)
    learned = math.exp(-(epoch + 1) / pace)
    overfit = 0.004 * (epoch + 1) * (1.0 - hp.dropout)  # validation climbs slowly, dropout slows it
    val_loss = floor + 1.2 * learned + overfit
    train_loss = floor + 1.2 * learned - 0.5 * overfit
    logs: dict[str, float] = {}
    for prefix, loss in (("", train_loss), ("val_", val_loss)):
        logs[f"{prefix}loss"] = loss
        for name in METRICS[task]:  # each metric a monotone function of the loss
            if direction_of(name) == "maximize":
                logs[f"{prefix}{name}"] = 1.0 / (1.0 + loss)
            else:
                logs[f"{prefix}{name}"] = math.sqrt(loss) if name == "rmse" else loss
    return logs


def n_params(hp: Hyperparameters, n_features: int, outputs: int) -> int:
    """The MLP's weights and biases, as ``model.build`` would make them."""
    sizes = [n_features, *hp.units, outputs]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


def simulate_fit(
    hp: Hyperparameters,
    training: TrainingConfig,
    *,
    task: str,
    monitor: str,
    shape: tuple[int, int],
    history: dict[str, list[float]],
    epoch_end: EpochEnd | None = None,
) -> FitResult:
    """Sleep ``training.simulate_epoch_seconds`` per epoch and log ``epoch_logs`` into ``history``
    (before ``epoch_end`` sees them, so a pruned trial keeps its last epoch), with the early
    stopping of ``training.early_stopping`` on ``monitor`` (Keras's rule, best epoch restored).

    ``shape``: the data's features and the model's outputs (for ``n_params``).
    """
    start = time.perf_counter()
    seconds = training.simulate_epoch_seconds or 0.0
    epochs = min(hp.epochs, training.max_epochs) if training.max_epochs else hp.epochs
    stopping = training.early_stopping
    sign = -1.0 if direction_of(monitor) == "maximize" else 1.0
    best_epoch, best, wait, stopped = 0, math.inf, 0, False
    for epoch in range(epochs):
        time.sleep(seconds)
        logs = epoch_logs(hp, epoch, task)
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if epoch_end is not None:
            epoch_end(epoch, logs)
        current = sign * logs.get(monitor, math.nan)
        if current < best - stopping.min_delta:
            best_epoch, best, wait = epoch, current, 0
        else:
            wait += 1
        if stopping.patience is not None and wait >= stopping.patience and epoch > 0:
            stopped = True
            break
    if stopping.patience is None:
        best_epoch = len(history["loss"]) - 1  # no early stopping: the last epoch's weights
    train = {k: v[best_epoch] for k, v in history.items() if not k.startswith("val_")}
    val = {k.removeprefix("val_"): v[best_epoch] for k, v in history.items() if k.startswith("val_")}
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        epochs_trained=len(history["loss"]),
        early_stopped=stopped,
        train=train,
        val=val,
        gaps=gaps(train, val),
        n_params=n_params(hp, *shape),
        seconds=time.perf_counter() - start,
    )
