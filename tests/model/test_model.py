"""The Keras model per task, the fit loop's measurements, and the pure metric helpers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tuning.model.build import build_model
from tuning.model.fit import fit_model
from tuning.model.metrics import diverged, epoch_gaps, gap, gaps


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
    assert result.val["loss"] == result.history["val_loss"][result.best_epoch]
    # Read from the history, not evaluated again: the weights the model holds give those values.
    again = model.evaluate(x[150:], y[150:], verbose=0, return_dict=True)
    assert set(result.val) == set(again) == {"loss", "log_loss", "accuracy", "auc"}
    for name, value in again.items():
        assert result.val[name] == pytest.approx(value, rel=1e-5), name
    assert result.gaps["gap_loss"] == pytest.approx(result.val["loss"] - result.train["loss"])


def keras_best_epoch(values, min_delta):
    """Keras' EarlyStopping rule, restated: an epoch is better only when it beats the best so far
    by more than ``min_delta`` (minimized metric)."""
    best, best_i = math.inf, 0
    for i, v in enumerate(values):
        if v + min_delta < best:
            best, best_i = v, i
    return best_i


@pytest.mark.slow
def test_best_epoch_is_the_epoch_early_stopping_restored_with_min_delta():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype("int32")
    keras.utils.set_random_seed(1)
    model = build_model(2, "binary", 2, units=[16], learning_rate=0.01)
    min_delta = 0.02
    result = fit_model(
        model, x[:200], y[:200], validation=(x[200:], y[200:]), epochs=12, batch_size=16,
        monitor="val_log_loss", patience=20, min_delta=min_delta,
    )  # fmt: skip
    values = result.history["val_log_loss"]
    expected = keras_best_epoch(values, min_delta)
    # The case this test is for: the plain best epoch is another one (small late improvements).
    assert expected != int(np.argmin(values)), values
    assert result.best_epoch == expected
    # ...and the weights the model holds are that epoch's: re-evaluated, they give its value.
    again = model.evaluate(x[200:], y[200:], verbose=0, return_dict=True)
    assert again["log_loss"] == pytest.approx(values[expected], rel=1e-5)
    assert result.val["log_loss"] == values[expected]


def test_log_loss_is_the_cross_entropy_whatever_loss_trains_the_model():
    """``log_loss`` is the same number for a focal-loss model as sklearn's log loss of its
    probabilities; ``loss`` is the focal loss, on another scale."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    for loss in ("binary_crossentropy", "binary_focal_crossentropy"):
        keras.utils.set_random_seed(0)
        model = build_model(3, "binary", 2, units=[4], loss=loss)
        values = model.evaluate(x, y, verbose=0, return_dict=True)
        p = model.predict(x, verbose=0).reshape(-1).astype("float64")
        assert values["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-4)
        if loss == "binary_focal_crossentropy":
            assert values["loss"] < 0.8 * values["log_loss"]  # another scale: not comparable


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_multiclass_log_loss_is_the_same_for_one_hot_and_index_targets(loss):
    from sklearn.metrics import log_loss

    from tuning.model.build import needs_one_hot

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)).astype("float32")
    y = rng.integers(0, 3, size=60).astype("int32")
    keras.utils.set_random_seed(0)
    model = build_model(3, "multiclass", 3, units=[4], loss=loss)
    target = keras.utils.to_categorical(y, 3) if needs_one_hot(loss, "multiclass") else y
    values = model.evaluate(x, target, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0).astype("float64")
    assert values["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), rel=1e-4)


def test_regression_errors_are_in_the_targets_units():
    """A model trained on (y - mean) / scale reports rmse and mae of y itself."""
    mean, scale = 5000.0, 1500.0
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2)).astype("float32")
    y = (mean + scale * x[:, 0]).astype("float32")
    keras.utils.set_random_seed(0)
    model = build_model(2, "regression", 1, units=[4], target_units=(mean, scale))
    values = model.evaluate(x, (y - mean) / scale, verbose=0, return_dict=True)
    pred = mean + scale * model.predict(x, verbose=0).reshape(-1).astype("float64")
    assert values["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)), rel=1e-4)
    assert values["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-4)


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
