"""What each task allows and produces: losses, metrics, output layer. Names only, no Keras import."""

from __future__ import annotations

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")

# Losses that fit each task; the first one is the task's standard loss (``loss: auto``).
LOSSES: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy", "binary_focal_crossentropy"),
    "multiclass": (
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "categorical_focal_crossentropy",
    ),
    "regression": ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh"),
}
LOSS_ALIASES: dict[str, str] = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}

# Metrics compiled into every model of a task (names as they appear in the Keras history).
# ``log_loss`` is the cross-entropy of the predicted probabilities whatever loss trained the
# model; regression errors are in the target's own units (the model trains on a standardized
# target). Each is computed the same way in every trial, so trials compare on it.
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("log_loss", "accuracy", "auc"),
    "multiclass": ("log_loss", "accuracy"),
    "regression": ("rmse", "mae"),
}

# What ranks trials by default (``study.metric: auto``): one scale for every trial, whichever
# loss function a trial trains with (``val_loss`` of a focal loss and of a cross-entropy are not
# comparable), measured on the validation split at the restored best weights.
SELECTION_METRIC: dict[str, str] = {
    "binary": "val_log_loss",
    "multiclass": "val_log_loss",
    "regression": "val_rmse",
}

# Direction in which each metric improves; losses and errors go down.
MAXIMIZED: frozenset[str] = frozenset({"accuracy", "auc"})

OUTPUT_ACTIVATION: dict[str, str | None] = {
    "binary": "sigmoid",
    "multiclass": "softmax",
    "regression": None,
}

ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "tanh",
    "sigmoid",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "leaky_relu",
    "softplus",
    "softsign",
    "mish",
    "linear",
)

# Config name -> keras.optimizers class name.
OPTIMIZERS: dict[str, str] = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "lion": "Lion",
}


def resolve_loss(loss: str, task: str) -> str:
    """Canonical Keras name of ``loss`` for ``task`` (``auto`` is the task's standard loss)."""
    if loss == "auto":
        return LOSSES[task][0]
    return LOSS_ALIASES.get(loss, loss)


def loss_fits(loss: str, task: str) -> bool:
    return loss == "auto" or resolve_loss(loss, task) in LOSSES[task]


def monitored_metrics(task: str) -> tuple[str, ...]:
    """Every value a trial's history holds: loss and metrics, train and validation."""
    names = ("loss", *METRICS[task])
    return names + tuple(f"val_{n}" for n in names)


def resolve_metric(metric: str, task: str) -> str:
    """``auto`` is the task's selection metric; any other name is kept."""
    return SELECTION_METRIC[task] if metric == "auto" else metric


def direction_of(metric: str) -> str:
    """``maximize`` for accuracy-like metrics, ``minimize`` for losses and errors."""
    base = metric.removeprefix("val_")
    return "maximize" if base in MAXIMIZED else "minimize"
