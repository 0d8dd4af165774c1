"""One compiled MLP per structure, reused by every trial of that structure (``training.kept_models``).

Most of a short trial's fixed cost is TensorFlow tracing a new model's train and test functions
(1.1 s of a 2.2 s one-epoch trial on 2 cores, docs/performance.md). Keras keeps those functions
on the model object, so a model that stays alive keeps them: ``SlicedMLP`` is one model per
structure (data shape, activation, optimizer, loss), with at least ``MIN_DEPTH`` hidden layers
as wide as the widest trial needs; a trial's own depth, widths, dropout rate and learning rate
are variables, so the graph traced once serves every trial of that structure (the default
space's 27 combinations of depth, activation and optimizer are 9 structures).

Same values as a fresh model (``tests/model/test_reuse.py``, to 1e-6 over whole fits):

- each layer computes with the slice of the wide kernel of its true shape: the same matmul and
  bias add as ``Dense``, never a padded one; the rest of each kernel gets zero gradients and
  stays zero (every optimizer of the space moves a weight only along its gradient); a layer
  past the trial's depth passes its input on unchanged (``x @ I + 0``, exact in float32);
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

What it costs: each kept model holds its traced graphs, ~40 MB (``training.kept_models`` bounds
them); an epoch of a trial shallower than its kept model runs its skipped layers' selects, up to
~25% more per epoch on the default space's MLPs (experiments/benchmarks/reuse.py).
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

MIN_WIDTH = 128  # kernels at least this wide: one structure serves every width of the default space
MIN_DEPTH = 3  # hidden layers at least: one structure serves every depth of the default space


@dataclass(frozen=True)
class Structure:
    """What one traced graph is specific to: trials that share it share one ``SlicedMLP``."""

    n_features: int
    task: str
    n_classes: int
    depth: int  # hidden layers kept, at least MIN_DEPTH: a trial uses its first ones
    width: int  # the wide kernels' width: a power of two >= every layer of the trial
    activation: str
    optimizer: str
    loss: str
    steps_per_execution: int
    target_units: tuple[float, float]

    @staticmethod
    def width_for(units: Sequence[int]) -> int:
        """The smallest power of two >= ``MIN_WIDTH`` and every layer's width."""
        width = MIN_WIDTH
        while width < max(units):
            width *= 2
        return width

    @staticmethod
    def depth_for(units: Sequence[int]) -> int:
        """``MIN_DEPTH``, or the trial's depth where it is deeper."""
        return max(MIN_DEPTH, len(units))


class SlicedMLP(keras.Model):  # type: ignore[misc]
    """The MLP of ``build.mlp`` whose depth (at most ``depth``), hidden widths (at most ``width``)
    and dropout rate are variables, set for each trial by ``load``."""

    def __init__(self, structure: Structure, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        s = structure
        self.structure = s
        self.hidden = [keras.layers.Dense(s.width, name=f"dense_{i}") for i in range(s.depth)]
        self.out = keras.layers.Dense(output_units(s.task, s.n_classes), name="output")
        self.activation = keras.activations.get(s.activation)
        self.depth = keras.Variable(s.depth, dtype="int32", trainable=False, name="depth")
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
        for i, (layer, width, seed) in enumerate(zip(self.hidden, self.widths, self.seeds, strict=True)):
            # Past the trial's depth a layer passes its input on exactly (x @ I + 0, no activation,
            # no dropout) and its weights get no gradient: selected with where, which runs no
            # branch (TensorFlow's cond and switch cost a function call per step without Grappler).
            on = i < self.depth
            n_out = ops.where(on, ops.cast(width, "int32"), n_in)
            kernel = ops.slice(layer.kernel, (0, 0), ops.stack([n_in, n_out]))
            kernel = ops.where(on, kernel, ops.eye(n_in, n_out, dtype=kernel.dtype))
            bias = ops.slice(layer.bias, (0,), ops.expand_dims(n_out, 0))
            bias = ops.where(on, bias, ops.zeros_like(bias))
            z = _add_bias(ops.matmul(h, kernel), bias)
            h = ops.where(on, self.activation(z), z)
            if training:  # Keras' dropout: tensorflow's stateless_dropout with a float rate
                rate, scale = ops.where(on, self.rate, 0.0), ops.where(on, self.scale, 1.0)
                keep = keras.random.uniform(ops.shape(h), seed=seed, dtype=h.dtype) >= rate
                h = ops.where(keep, ops.multiply(h, scale), ops.zeros((), h.dtype))
            n_in = n_out
        n_classes = ops.shape(self.out.kernel)[1]
        kernel = ops.slice(self.out.kernel, (0, 0), ops.stack([n_in, n_classes]))
        # The output's width is the structure's: said, so that its bias add, the loss and the
        # metrics are the very graph a fresh model's output gets.
        out = _tf().ensure_shape(ops.matmul(h, kernel), (None, self.out.units))
        return self.out_activation(ops.add(out, self.out.bias))

    def load(self, fresh: keras.Model, units: Sequence[int], dropout: float) -> None:
        """Take ``fresh``'s initial weights and dropout seeds, and the trial's depth, widths and
        rate. Layers past the trial's depth hold zeros."""
        *hidden, out = [layer for layer in fresh.layers if isinstance(layer, keras.layers.Dense)]
        for i, wide in enumerate(self.hidden):
            _load_corner(wide, hidden[i] if i < len(hidden) else None)
        _load_corner(self.out, out)
        self.depth.assign(len(units))
        for i, width in enumerate(self.widths):
            width.assign(int(units[i]) if i < len(units) else 0)
        # Python's float rounding, then float32, as tensorflow's dropout does with a float rate.
        self.rate.assign(np.float32(dropout))
        self.scale.assign(np.float32(1 / (1 - dropout)))
        drops = [layer for layer in fresh.layers if isinstance(layer, keras.layers.Dropout)]
        for generator, layer in zip(self.seeds, drops, strict=False):  # none at rate 0: no draws
            generator.state.assign(layer.seed_generator.state.value)
        self.n_params = int(sum(int(np.prod(w.shape)) for w in fresh.trainable_weights))


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


def _load_corner(wide: keras.layers.Dense, own: keras.layers.Dense | None) -> None:
    """``own``'s kernel and bias into the top-left corner of ``wide``'s, zeros elsewhere."""
    values = own.get_weights() if own is not None else [None] * len(wide.weights)
    for variable, value in zip(wide.weights, values, strict=True):
        full = np.zeros(variable.shape, dtype="float32")
        if value is not None:
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
    graphs: ~40 MB on an MLP of the default space, whose 9 structures are its activations x
    optimizers).
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
