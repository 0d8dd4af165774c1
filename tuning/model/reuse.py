"""One compiled MLP per structure, reused by every trial of that structure (``training.kept_models``).

Most of a short trial's fixed cost is TensorFlow tracing a new model's train and test functions
(0.7 s of a 1.35 s one-epoch trial on 2 cores, docs/performance.md). Keras keeps those functions
on the model object, so a model that stays alive keeps them: ``SlicedMLP`` is one model per
structure (data shape, depth, activation, optimizer, loss, and the power of two its widest
layer fits in), its hidden layers that wide; a trial's own widths, dropout rate and learning
rate are variables, so the graph traced once serves every trial of that structure.

The same bits as a fresh model (``tests/model/test_reuse.py``; whole sweeps, not only steps):

- each layer computes with the slice of the wide kernel of its true shape: the same matmul and
  the same ``BiasAdd`` as ``Dense`` (``_add_bias``), never a padded one; the rest of each kernel
  gets zero gradients and stays zero (every optimizer of the space moves a weight only along
  its gradient), and the output declares its width, so the loss and metrics are the same graph;
- the initial weights and the dropout seeds are those of the plain model, built from the same
  seed (``build.mlp``, uncompiled) and copied in;
- dropout draws its mask as Keras' ``Dropout`` does (a uniform of the layer's true shape from
  the layer's seed generator, kept where ``>= rate``, scaled by ``1 / (1 - rate)`` rounded
  once), so the masks are the same numbers;
- the optimizer's variables go back to what a new optimizer holds, its learning rate set.

With ``training.graph_optimizations: true`` Grappler fuses ops of the fresh model that the
sliced one leaves apart: the values agree to float32 rounding, as that setting already says.

Why by hand: Keras has no public way to share a traced function between models (a traced step
belongs to its model's variables), and KerasTuner and hand-written Optuna loops build and trace
every trial's model anew. Dynamic slices need TensorFlow's graphs: on another backend, or for
``model=custom`` (its structure is the builder's), each trial builds a fresh model.

What it costs, and why it is opt-in: each kept model holds its traced graphs, ~40 MB
(``training.kept_models`` bounds them), and the first trial of a structure traces a little more
than a fresh model. A later trial saves its trace, ~0.5 s. Depth and activation are part of the
structure, not variables: layers past a trial's depth selected away cost ~25% more per epoch
(TensorFlow's cond and switch, a function call per step without Grappler, more still), and
kernels of 128 for every width ~15% (measured), which long trials pay back and more. So a
sweep gains where few structures meet many short trials, not on the default space's 108
(docs/performance.md#kept-compiled-models).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tuning.config.tasks import OUTPUT_ACTIVATION
from tuning.model.build import compile_model, output_units
from tuning.model.fit import trainable_params

# Kernels as wide as the next power of two (at least this): a trial's slice is at least a quarter
# of each kernel. Wider kernels would serve more trials, but every step's gradients and optimizer
# update run over the whole kernel: at 128 for a 64-wide trial, ~15% more per epoch (measured).
MIN_WIDTH = 16


@dataclass(frozen=True)
class Structure:
    """What one traced graph is specific to: trials that share it share one ``SlicedMLP``."""

    n_features: int
    task: str
    n_classes: int
    depth: int
    width: int  # the kernels' width: the power of two >= every layer of the trial (>= MIN_WIDTH)
    activation: str
    optimizer: str
    loss: str
    steps_per_execution: int
    target_units: tuple[float, float]

    @staticmethod
    def width_for(units: Sequence[int]) -> int:
        """The smallest power of two >= ``MIN_WIDTH`` and the trial's widest layer."""
        width = MIN_WIDTH
        while width < max(units):
            width *= 2
        return width


class SlicedMLP(keras.Model):  # type: ignore[misc]
    """The MLP of ``build.mlp`` whose hidden widths (at most ``width``) and dropout rate are
    variables, set for each trial by ``load``."""

    def __init__(self, structure: Structure, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        s = structure
        self.structure = s
        self.hidden = [keras.layers.Dense(s.width, name=f"dense_{i}") for i in range(s.depth)]
        self.out = keras.layers.Dense(output_units(s.task, s.n_classes), name="output")
        self.activation = keras.activations.get(s.activation)
        self.out_activation = keras.activations.get(OUTPUT_ACTIVATION[s.task])
        self.widths = [
            keras.Variable(s.width, dtype="int32", trainable=False, name=f"units_{i}") for i in range(s.depth)
        ]
        self.rate = keras.Variable(0.0, dtype="float32", trainable=False, name="dropout_rate")
        self.scale = keras.Variable(1.0, dtype="float32", trainable=False, name="dropout_scale")
        self.seeds = [keras.random.SeedGenerator(0, name=f"dropout_{i}") for i in range(s.depth)]
        self.n_params = 0  # the trial's own weights (its true widths), set by load()
        n_in = s.n_features
        for layer in self.hidden:
            layer.build((None, n_in))
            n_in = s.width
        self.out.build((None, s.width))
        self.build((None, s.n_features))

    def call(self, x: Any, training: bool = False) -> Any:
        ops = keras.ops
        h, n_in = x, ops.convert_to_tensor(self.structure.n_features, "int32")
        for layer, width, seed in zip(self.hidden, self.widths, self.seeds, strict=True):
            n_out = ops.cast(width, "int32")  # a tensor: ops.stack takes no keras.Variable
            kernel = ops.slice(layer.kernel, (0, 0), ops.stack([n_in, n_out]))
            bias = ops.slice(layer.bias, (0,), ops.expand_dims(n_out, 0))
            h = self.activation(_add_bias(ops.matmul(h, kernel), bias))
            if training:  # Keras' dropout: tensorflow's stateless_dropout with a float rate
                keep = keras.random.uniform(ops.shape(h), seed=seed, dtype=h.dtype) >= self.rate
                h = ops.where(keep, ops.multiply(h, self.scale), ops.zeros((), h.dtype))
            n_in = n_out
        n_classes = ops.shape(self.out.kernel)[1]
        kernel = ops.slice(self.out.kernel, (0, 0), ops.stack([n_in, n_classes]))
        # The output's width is the structure's: said, so that its bias add, the loss and the
        # metrics are the very graph a fresh model's output gets.
        out = _tf().ensure_shape(ops.matmul(h, kernel), (None, self.out.units))
        return self.out_activation(ops.add(out, self.out.bias))

    def load(self, fresh: keras.Model, units: Sequence[int], dropout: float) -> None:
        """Take ``fresh``'s initial weights and dropout seeds, and the trial's widths and rate."""
        dense = [layer for layer in fresh.layers if isinstance(layer, keras.layers.Dense)]
        for wide, own in zip([*self.hidden, self.out], dense, strict=True):
            _load_corner(wide, own)
        for variable, width in zip(self.widths, units, strict=True):
            variable.assign(int(width))
        # Python's float rounding, then float32, as tensorflow's dropout does with a float rate.
        self.rate.assign(np.float32(dropout))
        self.scale.assign(np.float32(1 / (1 - dropout)))
        drops = [layer for layer in fresh.layers if isinstance(layer, keras.layers.Dropout)]
        for generator, layer in zip(self.seeds, drops, strict=False):  # none at rate 0: no draws
            generator.state.assign(layer.seed_generator.state.value)
        self.n_params = trainable_params(fresh)


def _add_bias(x: Any, bias: Any) -> Any:
    """``Dense``'s bias add as it runs on TensorFlow: ``keras.ops.add`` turns into ``BiasAdd`` for
    a bias of known width > 1, and would be a broadcast ``AddV2`` for the sliced one, whose
    gradient sums the batch in another order (float32 rounding). ``BiasAdd`` here: the same op,
    the same gradient kernel, the same bits (a hidden layer of one unit takes the plain path:
    ``tuning.search.trial.why_not_kept``)."""
    return _tf().nn.bias_add(x, bias)


def _tf() -> Any:
    """TensorFlow, the only backend kept models run on (``why_not_kept``): imported when one trains."""
    import tensorflow as tf

    return tf


def _load_corner(wide: keras.layers.Dense, own: keras.layers.Dense) -> None:
    """``own``'s kernel and bias into the top-left corner of ``wide``'s, zeros elsewhere."""
    for variable, value in zip(wide.weights, own.get_weights(), strict=True):
        full = np.zeros(variable.shape, dtype="float32")
        full[tuple(slice(0, n) for n in value.shape)] = value
        variable.assign(full)


class _Compiled:
    """A kept model and its optimizer's variables as new (to reset them for each trial)."""

    def __init__(self, model: SlicedMLP) -> None:
        self.model = model
        self.initial = [np.array(v.value) for v in model.optimizer.variables]

    def reset_optimizer(self, learning_rate: float) -> None:
        for variable, value in zip(self.model.optimizer.variables, self.initial, strict=True):
            variable.assign(value)
        self.model.optimizer.learning_rate = learning_rate


_kept: OrderedDict[Structure, _Compiled] = OrderedDict()


def reused_model(  # noqa: PLR0913 - keyword-only, the trial's settings
    fresh: keras.Model,
    structure: Structure,
    *,
    units: Sequence[int],
    dropout: float,
    learning_rate: float,
    keep: int,
) -> keras.Model:
    """The kept compiled model of ``structure``, holding ``fresh``'s initial state for this trial.

    ``fresh``: the trial's plain MLP (``build.mlp``), built from the trial's seed and not compiled.
    ``keep``: models kept at most; the least recently used goes first (each holds its traced
    graphs: ~40 MB on an MLP of the default space).
    """
    compiled = _kept.pop(structure, None)
    if compiled is None:
        model = SlicedMLP(structure)
        compile_model(
            model,
            structure.task,
            optimizer=structure.optimizer,
            learning_rate=learning_rate,
            loss=structure.loss,
            steps_per_execution=structure.steps_per_execution,
            target_units=structure.target_units,
        )
        compiled = _Compiled(model)
        while len(_kept) >= keep:
            _kept.popitem(last=False)
    _kept[structure] = compiled  # the most recently used last
    compiled.reset_optimizer(learning_rate)
    compiled.model.load(fresh, units, dropout)
    return compiled.model


def forget() -> None:
    """Drop every kept model (tests; a process that changes backend settings)."""
    _kept.clear()
