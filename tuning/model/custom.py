"""Build a user's model with ``hp``, check it fits the task, and compile our task metrics into it.

The builder owns the architecture, the optimizer and the loss; we own what makes trials
comparable: every model is recompiled with its own optimizer and loss plus the task's metrics
(``tuning.model.build.task_metrics``), so ``val_log_loss`` / ``val_rmse`` exist and are computed
the same way in every trial, whatever metrics the builder compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tuning.config.tasks import OUTPUT_ACTIVATION
from tuning.errors import ConfigError, TrialFailed
from tuning.model.build import task_metrics
from tuning.model.builder import Builder, DatasetInfo

if TYPE_CHECKING:
    from tuning.data import Dataset
    from tuning.model.hp import HyperParameters

# What the last layer's activation may be called, by task (a Softmax layer is "softmax").
ACTIVATIONS_OK = {
    "binary": ("sigmoid",),
    "multiclass": ("softmax",),
    "regression": ("linear", "None"),
}


def build_custom(
    builder: Builder, hp: HyperParameters, dataset: Dataset, steps_per_execution: int = 1
) -> keras.Model:
    """The builder's model for ``hp``, checked and recompiled with our metrics.

    Raises:
        TrialFailed: the builder raised for these values (this trial's failure).
        ConfigError: the builder broke its contract (an hp error, not a compiled ``keras.Model``,
            an output that does not fit the task): one line naming it.
    """
    try:
        model = builder(hp, DatasetInfo.of(dataset))
    except ConfigError:  # HpError: the builder's own bug, found by our hp
        raise
    except Exception as err:  # raised by the user's code for these values: this trial's failure
        first = " ".join(str(err).split())[:300]
        raise TrialFailed(f"{builder.path} raised {type(err).__name__}: {first}") from err
    check_model(model, builder.path, dataset)
    compile_ours(model, dataset, steps_per_execution)
    return model


def check_model(model: Any, path: str, dataset: Dataset) -> None:
    """Refuse a model that is not a compiled ``keras.Model`` with one output fitting the task:
    one sigmoid unit (binary), ``n_classes`` softmax units (multiclass), one linear unit
    (regression), and a loss that takes probabilities (no ``from_logits=True``)."""

    def fail(problem: str) -> None:
        raise ConfigError("model.build", f"{path} {problem}")

    if not isinstance(model, keras.Model):
        fail(f"returned {type(model).__name__}, not a keras.Model; build() must return the model")
    if not model.compiled or model.optimizer is None or model.loss is None:
        fail("returned a model that is not compiled; call model.compile(optimizer=..., loss=...) in build()")
    if getattr(model.loss, "from_logits", False):
        fail(
            "compiles a loss with from_logits=True; end the model with its "
            f"{OUTPUT_ACTIVATION[dataset.task]} activation and use from_logits=False"
        )
    task = dataset.task
    units = dataset.n_classes if task == "multiclass" else 1
    need = (
        f"a {task} target needs {units} {OUTPUT_ACTIVATION[task] or 'linear'} unit{'s' if units > 1 else ''}"
    )
    rows = dataset.x_val[:8]
    try:
        out = model(rows, training=False)
    except Exception as err:  # cannot take the data's rows at all: the builder's mismatch
        fail(f"cannot take the data's rows of shape {rows.shape[1:]}: {type(err).__name__}: {str(err)[:200]}")
    if isinstance(out, (list, tuple, dict)):
        fail(f"returns {len(out)} outputs; {need}")
    shape = tuple(out.shape)
    if shape != (len(rows), units):
        fail(f"outputs shape {(None, *shape[1:])}; {need}")
    activation = output_activation(model)
    if activation is not None and activation not in ACTIVATIONS_OK[task]:
        fail(f"ends with a {activation} activation; {need}")
    values = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)
    if task == "binary" and not ((values >= 0) & (values <= 1)).all():
        fail(f"outputs values outside [0, 1]; {need} (a probability)")
    if task == "multiclass" and not ((values >= 0).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-3)):
        fail(f"outputs rows that are not probabilities; {need}")


def output_activation(model: keras.Model) -> str | None:
    """The name of the last layer's activation, when the layer says (None for a custom layer)."""
    if not model.layers:
        return None
    layer = model.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "None" if isinstance(layer, keras.layers.Dense) else None
    name = getattr(activation, "__name__", None)
    return str(name) if name else None


def one_hot_labels(model: keras.Model, task: str) -> bool:
    """Whether the model's loss takes one-hot rows (a categorical, non-sparse loss of a multiclass
    task) rather than class indices. Read from the loss's name; any other loss gets indices."""
    if task != "multiclass":
        return False
    loss = model.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    name = str(name).lower()
    return "categorical" in name and "sparse" not in name


def compile_ours(model: keras.Model, dataset: Dataset, steps_per_execution: int = 1) -> None:
    """Recompile with the builder's optimizer and loss and the task's metrics (replacing its own)."""
    model.compile(
        optimizer=model.optimizer,
        loss=model.loss,
        metrics=task_metrics(
            dataset.task, one_hot=one_hot_labels(model, dataset.task), target_units=dataset.target_units
        ),
        steps_per_execution=steps_per_execution,
    )
    # As build_model does: the optimizer's slots now, not in a second trace of the first step.
    model.optimizer.build(model.trainable_variables)
