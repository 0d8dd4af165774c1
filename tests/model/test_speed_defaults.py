"""Speed defaults change how fast a trial runs, never what it computes: same seed, same numbers."""

from __future__ import annotations

import gc
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import settings

from tuning.config import parse
from tuning.config.space import Hyperparameters
from tuning.data import load_dataset
from tuning.model.build import build_model, task_metrics
from tuning.model.fit import fit_model, fresh_session, seed_everything
from tuning.search.trial import fit_trial, targets

pytestmark = pytest.mark.slow

# Dropout draws random masks and 400 rows leave a partial last batch: both must replay exactly.
HP = Hyperparameters(units=(24, 12), dropout=0.2, batch_size=16, epochs=4, learning_rate=3e-3)


def _data(name: str):
    sized = ["data.n_samples=400"] if name == "plants" else []  # iris has 150 rows
    cfg = settings(f"data={name}", *sized, "tracking=none", tiny=False)
    parsed = parse(cfg)
    return parsed.training, load_dataset(parsed.data, parsed.split, parsed.seed)


def _assert_same_fit(a, b) -> None:
    (model_a, result_a), (model_b, result_b) = a, b
    assert result_a.history.keys() == result_b.history.keys()
    for key in result_a.history:
        np.testing.assert_array_equal(result_a.history[key], result_b.history[key], err_msg=key)
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert result_a.train == result_b.train
    assert result_a.val == result_b.val
    assert result_a.best_epoch == result_b.best_epoch
    assert result_a.epochs_trained == result_b.epochs_trained


def test_default_steps_per_execution_is_a_real_speed_setting():
    assert settings()["training"]["steps_per_execution"] > 1


@pytest.mark.parametrize("data", ["plants", "iris"])  # binary (accuracy, AUC) and multiclass (one-hot)
def test_steps_per_execution_leaves_weights_history_and_metrics_identical(data):
    training, dataset = _data(data)
    one_step = fit_trial(HP, dataset, replace(training, steps_per_execution=1), seed=7)
    default = fit_trial(HP, dataset, training, seed=7)
    assert default[0].steps_per_execution == training.steps_per_execution > 1
    assert one_step[0].steps_per_execution == 1
    _assert_same_fit(one_step, default)


def test_built_model_trains_exactly_like_plain_keras_with_default_settings():
    """build_model (optimizer slots created up front, steps_per_execution from the config) vs
    the same layers compiled with Keras' defaults: identical updates, epoch after epoch."""
    training, ds = _data("plants")
    y = targets(ds.y_train, HP, ds)

    def fit(model: keras.Model) -> tuple[keras.Model, dict[str, list[float]]]:
        history = model.fit(
            ds.x_train, y, validation_data=(ds.x_val, ds.y_val), epochs=3, batch_size=16, verbose=0
        )
        return model, history.history

    fresh_session()
    seed_everything(3)
    ours = build_model(
        ds.n_features,
        ds.task,
        ds.n_classes,
        units=HP.units,
        dropout=HP.dropout,
        learning_rate=HP.learning_rate,
        steps_per_execution=training.steps_per_execution,
    )
    assert ours.optimizer.built
    ours, our_history = fit(ours)

    fresh_session()
    seed_everything(3)
    plain = keras.Sequential(
        [
            keras.Input(shape=(ds.n_features,)),
            keras.layers.Dense(24, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    plain.compile(
        optimizer=keras.optimizers.Adam(learning_rate=HP.learning_rate),
        loss="binary_crossentropy",
        metrics=task_metrics("binary"),
    )
    assert not plain.optimizer.built
    plain, plain_history = fit(plain)

    assert our_history.keys() == plain_history.keys()
    for key in our_history:
        np.testing.assert_array_equal(our_history[key], plain_history[key], err_msg=key)
    for wa, wb in zip(ours.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_trials_in_one_process_leave_no_graphs_behind():
    """Each trace registers a custom gradient (Keras' optimizer) that TensorFlow never drops;
    fresh_session drops them, so the previous trials' graphs can be collected."""
    from tensorflow.python.framework import ops

    training, dataset = _data("plants")
    small = Hyperparameters(units=(8,), epochs=1)

    def live() -> tuple[int, int]:
        fresh_session()
        registered = sum(n.startswith("CustomGradient-") for n in ops._gradient_registry._registry)
        graphs = sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())
        return registered, graphs

    fit_trial(small, dataset, training, seed=1)
    after_one = live()
    for seed in (2, 3, 4):
        fit_trial(small, dataset, training, seed=seed)
    assert live() == after_one == (0, after_one[1])


def test_fit_model_trains_exactly_like_plain_model_fit():
    """fit_model passes explicit step counts (one data iterator per epoch instead of two): the
    batches, updates and per-epoch metrics stay those of a plain ``model.fit``."""
    _, ds = _data("plants")
    y, y_val = targets(ds.y_train, HP, ds), targets(ds.y_val, HP, ds)

    def model() -> keras.Model:
        fresh_session()
        seed_everything(5)
        return build_model(ds.n_features, ds.task, ds.n_classes, units=HP.units, dropout=HP.dropout)

    ours = model()
    result = fit_model(
        ours, ds.x_train, y, validation=(ds.x_val, y_val), epochs=3, batch_size=14, patience=None
    )
    plain = model()
    history = plain.fit(
        ds.x_train, y, validation_data=(ds.x_val, y_val), epochs=3, batch_size=14, verbose=0, shuffle=True
    ).history
    assert len(ds.x_train) % 14 and len(ds.x_val) % 14  # partial last batches on both sides
    assert result.history.keys() == history.keys()
    for key in history:
        np.testing.assert_array_equal(result.history[key], history[key], err_msg=key)
    for wa, wb in zip(ours.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_graph_optimizations_off_is_applied_and_changes_values_only_by_rounding():
    """``training.graph_optimizations: false`` (the default) turns Grappler off for the process;
    the trial's history, metrics and weights agree with Grappler's to float32 rounding."""
    import tensorflow as tf

    from tuning.model.backend import start_tensorflow

    training, dataset = _data("plants")
    assert training.graph_optimizations is False
    fits = {}
    try:
        for on in (True, False):
            start_tensorflow(replace(training, graph_optimizations=on))
            assert (
                tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) is not on
            )
            fits[on] = fit_trial(HP, dataset, training, seed=7)
    finally:
        start_tensorflow(training)
    (model_on, on), (model_off, off) = fits[True], fits[False]
    assert on.history.keys() == off.history.keys() and on.best_epoch == off.best_epoch
    for key in on.history:
        np.testing.assert_allclose(on.history[key], off.history[key], rtol=1e-5, err_msg=key)
    for wa, wb in zip(model_on.get_weights(), model_off.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
