"""A user's model checked against the task and recompiled with our metrics (real Keras models)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from tuning.data import Dataset
from tuning.errors import ConfigError
from tuning.model.build import in_target_units
from tuning.model.custom import check_model, compile_ours, one_hot_labels


def dataset(task: str, n_classes: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    if task == "regression":
        y = (x @ np.arange(1, 5) * 10 + 100).astype(np.float32)
        scaler = StandardScaler().fit(y.reshape(-1, 1))
        names = None
    else:
        k = 2 if task == "binary" else n_classes
        y, scaler, names = rng.integers(0, k, size=40).astype(np.int32), None, [str(i) for i in range(k)]
    return Dataset("t", task, x, y, x, y, x, y, "y", list("abcd"), list("abcd"), names, None, scaler)


def model(units: int, activation: str | None, loss, functional: bool = False) -> keras.Model:
    if functional:
        inputs = keras.Input(shape=(4,))
        m = keras.Model(
            inputs, keras.layers.Dense(units, activation=activation)(keras.layers.Dense(8)(inputs))
        )
    else:
        m = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(units, activation=activation)])
    m.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return m


@pytest.mark.parametrize(
    "task, built, problem",
    [
        (
            "multiclass",
            lambda: model(2, "softmax", "sparse_categorical_crossentropy"),
            "outputs shape (None, 2)",
        ),
        ("multiclass", lambda: model(3, "sigmoid", "sparse_categorical_crossentropy"), "ends with a sigmoid"),
        ("regression", lambda: model(1, "sigmoid", "mse"), "ends with a sigmoid activation"),
        (
            "binary",
            lambda: model(1, "sigmoid", keras.losses.BinaryCrossentropy(from_logits=True)),
            "from_logits",
        ),
        ("binary", lambda: keras.Sequential([keras.layers.Dense(1)]), "is not compiled"),
    ],
)
def test_a_model_that_does_not_fit_the_task_is_one_line(task, built, problem):
    with pytest.raises(ConfigError, match="^model.build: m.build ") as err:
        check_model(built(), "m.build", dataset(task))
    assert problem in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "loss, one_hot",
    [
        ("sparse_categorical_crossentropy", False),
        ("categorical_crossentropy", True),
        (keras.losses.CategoricalFocalCrossentropy(), True),
        (keras.losses.SparseCategoricalCrossentropy(), False),
    ],
)
def test_labels_follow_the_loss_and_log_loss_is_the_same_either_way(loss, one_hot):
    data = dataset("multiclass")
    m = model(3, "softmax", loss, functional=True)
    check_model(m, "m.build", data)
    assert one_hot_labels(m, "multiclass") is one_hot
    compile_ours(m, data)
    y = keras.utils.to_categorical(data.y_val, 3) if one_hot else data.y_val
    got = m.evaluate(data.x_val, y, verbose=0, return_dict=True)
    assert set(got) == {"loss", "log_loss", "accuracy"}  # the builder's own metrics replaced by ours
    p = np.clip(m.predict(data.x_val, verbose=0), 1e-7, 1 - 1e-7)
    expected = -np.mean(np.log(p[np.arange(len(p)), data.y_val]))
    assert got["log_loss"] == pytest.approx(expected, rel=1e-4)


def test_a_functional_regression_model_is_measured_and_saved_in_the_target_units():
    data = dataset("regression")
    m = model(1, None, "mse", functional=True)
    check_model(m, "m.build", data)
    compile_ours(m, data)
    scaled = data.target_scaler.transform(data.y_val.reshape(-1, 1)).reshape(-1)
    got = m.evaluate(data.x_val, scaled, verbose=0, return_dict=True)
    pred = m.predict(data.x_val, verbose=0).reshape(-1) * data.target_units[1] + data.target_units[0]
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((pred - data.y_val) ** 2)), rel=1e-4)
    served = in_target_units(m, *data.target_units)
    np.testing.assert_allclose(served.predict(data.x_val, verbose=0).reshape(-1), pred, rtol=1e-5)
