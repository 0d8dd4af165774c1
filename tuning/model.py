"""Build and compile the tutorial's MLP from plain arguments."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tuning.tasks import OPTIMIZERS, OUTPUT_ACTIVATION, resolve_loss


def task_metrics(task: str) -> list[keras.metrics.Metric | str]:
    """Metrics compiled for a task; their history names are those of ``tuning.tasks.METRICS``."""
    if task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    if task == "multiclass":
        return ["accuracy"]
    return [
        keras.metrics.MeanAbsoluteError(name="mae"),
        keras.metrics.RootMeanSquaredError(name="rmse"),
    ]


def build_model(
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
) -> keras.Sequential:
    """``Sequential`` of ``Dense`` hidden layers (``Dropout`` after each when rate > 0).

    The output layer follows the task: one sigmoid unit (binary), ``n_classes`` softmax
    units (multiclass) or one linear unit (regression).
    """
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,))]
    for width in units:
        layers.append(keras.layers.Dense(int(width), activation=activation))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    n_out = n_classes if task == "multiclass" else 1
    layers.append(keras.layers.Dense(n_out, activation=OUTPUT_ACTIVATION[task], name="output"))
    model = keras.Sequential(layers)
    opt_cls = getattr(keras.optimizers, OPTIMIZERS[optimizer])
    model.compile(
        optimizer=opt_cls(learning_rate=learning_rate),
        loss=resolve_loss(loss, task),
        metrics=task_metrics(task),
        steps_per_execution=steps_per_execution,
    )
    # Create the optimizer's slots now (zeros either way): left to the first traced train step,
    # TensorFlow would trace that step twice to create them, about a second per trial.
    model.optimizer.build(model.trainable_variables)
    return model


def needs_one_hot(loss: str, task: str) -> bool:
    """Categorical (non-sparse) losses take one-hot targets; the others take class indices."""
    return task == "multiclass" and resolve_loss(loss, task).startswith("categorical_")
