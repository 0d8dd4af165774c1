"""Build and compile the tutorial's MLP from plain arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tuning.config.tasks import OPTIMIZERS, OUTPUT_ACTIVATION, resolve_loss


class _InTargetUnits(keras.metrics.Metric):
    """Mixin: a regression metric measured in the target's own units.

    The model trains on the standardized target ``(y - mean) / scale``; predictions and labels
    are mapped back before the metric sees them, so ``rmse`` and ``mae`` read as the target
    does (prices in prices) and do not depend on how the target was scaled.
    """

    def __init__(self, *, mean: float = 0.0, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean, self.scale = float(mean), float(scale)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        def units(y: Any) -> Any:
            return keras.ops.cast(y, self.dtype) * self.scale + self.mean

        return super().update_state(units(y_true), units(y_pred), sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


@keras.saving.register_keras_serializable(package="tuning")
class RootMeanSquaredErrorInTargetUnits(_InTargetUnits, keras.metrics.RootMeanSquaredError):
    """RMSE in the target's units for a model trained on the standardized target."""


@keras.saving.register_keras_serializable(package="tuning")
class MeanAbsoluteErrorInTargetUnits(_InTargetUnits, keras.metrics.MeanAbsoluteError):
    """MAE in the target's units for a model trained on the standardized target."""


@keras.saving.register_keras_serializable(package="tuning")
class BinaryLogLoss(keras.metrics.BinaryCrossentropy):
    """Binary cross-entropy of the predicted probability, for labels given as a vector.

    Keras' metric, unlike its loss, does not match a ``(batch,)`` label to the ``(batch, 1)``
    sigmoid output; reshaping here keeps the labels as every other metric and loss sees them.
    """

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        y_true = keras.ops.reshape(keras.ops.cast(y_true, self.dtype), (-1, 1))
        return super().update_state(y_true, y_pred, sample_weight)


def task_metrics(
    task: str, *, one_hot: bool = False, target_units: tuple[float, float] = (0.0, 1.0)
) -> list[keras.metrics.Metric | str]:
    """Metrics compiled for a task; their history names are those of ``tuning.config.tasks.METRICS``.

    Args:
        one_hot: multiclass targets are one-hot rows (a categorical loss) rather than indices;
            ``log_loss`` is the same cross-entropy either way.
        target_units: ``(mean, scale)`` that map a standardized regression target back to its units.
    """
    if task == "binary":
        return [
            BinaryLogLoss(name="log_loss"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
        ]
    if task == "multiclass":
        if one_hot:
            return [
                keras.metrics.CategoricalCrossentropy(name="log_loss"),
                keras.metrics.CategoricalAccuracy(name="accuracy"),
            ]
        return [
            keras.metrics.SparseCategoricalCrossentropy(name="log_loss"),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ]
    mean, scale = target_units
    return [
        RootMeanSquaredErrorInTargetUnits(name="rmse", mean=mean, scale=scale),
        MeanAbsoluteErrorInTargetUnits(name="mae", mean=mean, scale=scale),
    ]


def build_model(  # noqa: PLR0913 - keyword-only, one per search-space setting
    n_features: int,
    task: str,
    n_classes: int,
    *,
    units: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    loss: str = "auto",
    steps_per_execution: int = 1,
    target_units: tuple[float, float] = (0.0, 1.0),
) -> keras.Sequential:
    """``Sequential`` of ``Dense`` hidden layers (``Dropout`` after each when rate > 0), compiled.

    The output layer follows the task: one sigmoid unit (binary), ``n_classes`` softmax
    units (multiclass) or one linear unit (regression, on the standardized target whose
    ``target_units`` are ``(mean, scale)``).
    """
    model = mlp(n_features, task, n_classes, units=units, activation=activation, dropout=dropout)
    compile_model(
        model,
        task,
        optimizer=optimizer,
        learning_rate=learning_rate,
        loss=loss,
        steps_per_execution=steps_per_execution,
        target_units=target_units,
    )
    return model


def mlp(
    n_features: int, task: str, n_classes: int, *, units: Sequence[int], activation: str, dropout: float
) -> keras.Sequential:
    """The MLP's layers, built and not compiled: its initial weights and dropout seeds are drawn here."""
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,))]
    for width in units:
        layers.append(keras.layers.Dense(int(width), activation=activation))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(
        keras.layers.Dense(output_units(task, n_classes), activation=OUTPUT_ACTIVATION[task], name="output")
    )
    return keras.Sequential(layers)


def output_units(task: str, n_classes: int) -> int:
    """Units of the output layer: the classes of a multiclass task, else one."""
    return n_classes if task == "multiclass" else 1


def compile_model(  # noqa: PLR0913 - keyword-only, as Model.compile's own
    model: keras.Model,
    task: str,
    *,
    optimizer: str,
    learning_rate: float,
    loss: str,
    steps_per_execution: int,
    target_units: tuple[float, float],
) -> None:
    """Compile with the optimizer, the loss and the task's metrics, and build the optimizer's slots."""
    opt_cls = getattr(keras.optimizers, OPTIMIZERS[optimizer])
    model.compile(
        optimizer=opt_cls(learning_rate=learning_rate),
        loss=resolve_loss(loss, task),
        metrics=task_metrics(task, one_hot=needs_one_hot(loss, task), target_units=target_units),
        steps_per_execution=steps_per_execution,
    )
    # Create the optimizer's slots now (zeros either way): left to the first traced train step,
    # TensorFlow would trace that step twice to create them, about a second per trial.
    model.optimizer.build(model.trainable_variables)


def needs_one_hot(loss: str, task: str) -> bool:
    """Categorical (non-sparse) losses take one-hot targets; the others take class indices."""
    return task == "multiclass" and resolve_loss(loss, task).startswith("categorical_")


def in_target_units(model: keras.Model, mean: float, scale: float) -> keras.Model:
    """The trained regression ``model`` followed by ``y * scale + mean``: predicts in the target's
    units, for saving and serving. Shares the trained layers; no training configuration. (A custom
    model that is not a ``Sequential`` is kept whole, as one layer.)"""
    if not isinstance(model, keras.Sequential):
        inputs = keras.Input(shape=model.input_shape[1:])
        outputs = keras.layers.Rescaling(scale, offset=mean, name="to_target_units")(model(inputs))
        return keras.Model(inputs, outputs)
    layers = [keras.Input(shape=model.input_shape[1:]), *model.layers]
    return keras.Sequential([*layers, keras.layers.Rescaling(scale, offset=mean, name="to_target_units")])
