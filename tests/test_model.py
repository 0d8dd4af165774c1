"""The Keras model per task, the fit loop's measurements, and the pure metric helpers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tuning.fit import fit_model
from tuning.metrics import best_epoch, diverged, epoch_gaps, gap, gaps
from tuning.model import build_model


@pytest.mark.parametrize(
    ("task", "n_classes", "loss", "out_units", "out_activation"),
    [
        ("binary", 2, "auto", 1, "sigmoid"),
        ("multiclass", 4, "auto", 4, "softmax"),
        ("regression", 1, "mse", 1, "linear"),
    ],
)
def test_model_shape_and_output_follow_the_task(task, n_classes, loss, out_units, out_activation):
    model = build_model(3, task, n_classes, units=[16, 8], activation="tanh", dropout=0.25, loss=loss)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.units for d in dense] == [16, 8, out_units]
    assert [d.activation.__name__ for d in dense[:-1]] == ["tanh", "tanh"]
    assert dense[-1].activation.__name__ == out_activation
    assert [d.rate for d in drops] == [0.25, 0.25]
    assert model.output_shape == (None, out_units)
    assert model.count_params() == (3 * 16 + 16) + (16 * 8 + 8) + (8 * out_units + out_units)


def test_no_dropout_layer_at_rate_zero_and_optimizer_gets_the_learning_rate():
    model = build_model(2, "binary", 2, units=[4], dropout=0.0, optimizer="sgd", learning_rate=0.037)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.037)


@pytest.mark.slow
def test_fit_restores_best_weights_and_measures_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = build_model(2, "binary", 2, units=[8])
    result = fit_model(
        model, x[:150], y[:150], validation=(x[150:], y[150:]), epochs=4, batch_size=32, patience=1
    )
    assert result.epochs_trained == len(result.history["loss"]) <= 4
    assert result.best_epoch == int(np.argmin(result.history["val_loss"]))
    assert result.val["loss"] == pytest.approx(result.history["val_loss"][result.best_epoch], rel=1e-4)
    assert result.gaps["gap_loss"] == pytest.approx(result.val["loss"] - result.train["loss"])
    assert set(result.val) == {"loss", "accuracy", "auc"}


def test_best_epoch_follows_the_metric_direction_and_skips_nan():
    history = {"val_loss": [0.5, 0.3, math.nan, 0.3, 0.4], "val_accuracy": [0.6, 0.8, 0.8, 0.9, 0.7]}
    assert best_epoch(history, "val_loss") == 1
    assert best_epoch(history, "val_accuracy") == 3


def test_gaps_are_positive_when_overfitting():
    assert gap(0.2, 0.5, "loss") == pytest.approx(0.3)
    assert gap(0.95, 0.8, "accuracy") == pytest.approx(0.15)
    assert gaps({"loss": 0.1, "mae": 1.0}, {"loss": 0.4, "mae": 1.5}) == pytest.approx(
        {"gap_loss": 0.3, "gap_mae": 0.5}
    )
    per_epoch = epoch_gaps(
        {"loss": [1.0, 0.5], "val_loss": [1.1, 0.9], "auc": [0.7, 0.9], "val_auc": [0.6, 0.8]}
    )
    assert per_epoch == {"gap_loss": pytest.approx([0.1, 0.4]), "gap_auc": pytest.approx([0.1, 0.1])}
    assert diverged({"loss": [1.0, math.inf]}) == 1 and diverged({"loss": [1.0]}) is None
