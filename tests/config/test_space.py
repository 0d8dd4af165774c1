"""Search-space parsing, sampling and every validation error."""

from __future__ import annotations

import optuna
import pytest

from tuning.config.space import Hyperparameters
from tuning.config.space_config import hyperparameters_from_config, parse_space
from tuning.errors import ConfigError


def sample(space, params):
    return space.suggest(optuna.trial.FixedTrial(params))


def test_dimensions_and_fixed_values_are_parsed():
    space = parse_space(
        {
            "n_layers": {"type": "int", "low": 1, "high": 3},
            "units": {"type": "int", "low": 8, "high": 64, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
            "optimizer": "sgd",
            "batch_size": {"type": "categorical", "choices": [32]},
        }
    )
    assert set(space.dimensions) == {"n_layers", "units", "dropout", "activation"}
    assert space.fixed == {"optimizer": "sgd", "batch_size": 32}
    assert space.dimensions["units"].log is True
    assert space.dimensions["dropout"].step == 0.1


def test_units_are_sampled_once_per_layer():
    space = parse_space(
        {"n_layers": {"type": "int", "low": 1, "high": 3}, "units": {"type": "int", "low": 8, "high": 64}}
    )
    hp = sample(space, {"n_layers": 3, "units_0": 8, "units_1": 16, "units_2": 64})
    assert hp.units == (8, 16, 64)
    assert hp.as_params()["units_2"] == 64
    assert hp.as_config()["units"] == [8, 16, 64]


def test_dropped_setting_takes_its_default():
    hp = sample(parse_space({"activation": "tanh"}), {})
    assert hp == Hyperparameters(activation="tanh")
    assert hp.dropout == 0.0


def test_fixed_units_list_sets_the_layers():
    hp = hyperparameters_from_config({"units": [16, 8], "loss": "binary_crossentropy"}, "binary")
    assert hp.units == (16, 8) and hp.n_layers == 2


def test_optuna_samples_every_dimension_within_bounds():
    space = parse_space(
        {
            "n_layers": {"type": "int", "low": 1, "high": 2},
            "units": {"type": "int", "low": 4, "high": 8},
            "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "loss": {"type": "categorical", "choices": "auto"},
        },
        task="binary",
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        hp = space.suggest(trial)
        assert 1 <= hp.n_layers <= 2 and all(4 <= u <= 8 for u in hp.units)
        assert 1e-4 <= hp.learning_rate <= 1e-1
        assert hp.loss in ("binary_crossentropy", "binary_focal_crossentropy")
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("entry", "key", "text"),
    [
        ({"units": {"type": "int", "low": 64, "high": 8}}, "search_space.units", "low (64) > high (8)"),
        (
            {"learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
            "search_space.learning_rate.low",
            "must be > 0",
        ),
        (
            {"dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": True}},
            "search_space.dropout.low",
            "log scale needs low > 0",
        ),
        ({"units": {"type": "int", "low": 0, "high": 8, "log": True}}, "search_space.units.low", ">= 1"),
        (
            {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True, "step": 0.01}},
            "search_space.learning_rate.step",
            "use either step or log",
        ),
        (
            {"activation": {"type": "categorical", "choices": []}},
            "search_space.activation.choices",
            "non-empty",
        ),
        (
            {"activation": {"type": "categorical", "choices": ["relu", "swoosh"]}},
            "search_space.activation.choices",
            "'swoosh'",
        ),
        ({"activation": "swoosh"}, "search_space.activation", "must be one of: relu"),
        ({"optimizer": "adamz"}, "search_space.optimizer", "must be one of: adam"),
        ({"dropout": {"type": "float", "low": 0.0, "high": 1.0}}, "search_space.dropout.high", "[0, 1)"),
        ({"dropout": -0.1}, "search_space.dropout", "[0, 1)"),
        ({"units": {"type": "float", "low": 1, "high": 4}}, "search_space.units.type", "int values"),
        (
            {"units": {"type": "range", "low": 1, "high": 4}},
            "search_space.units.type",
            "int, float, categorical",
        ),
        (
            {"units": {"type": "int", "low": 1, "high": 4, "chioces": 3}},
            "search_space.units.chioces",
            "allowed",
        ),
        ({"layers": 3}, "search_space.layers", "unknown setting"),
        ({"batch_size": 12.5}, "search_space.batch_size", "int values"),
    ],
)
def test_invalid_space_names_key_value_and_allowed(entry, key, text):
    with pytest.raises(ConfigError) as err:
        parse_space(entry)
    assert err.value.key == key
    assert text in str(err.value)


@pytest.mark.parametrize(
    ("loss", "task"),
    [
        ("categorical_crossentropy", "binary"),
        ("binary_crossentropy", "regression"),
        ("mean_squared_error", "multiclass"),
    ],
)
def test_loss_must_fit_the_task(loss, task):
    with pytest.raises(ConfigError, match=f"'{loss}' does not fit a {task} target; allowed: auto"):
        parse_space({"loss": {"type": "categorical", "choices": [loss, "auto"]}}, task)


def test_loss_auto_expands_to_the_task_losses():
    space = parse_space({"loss": {"type": "categorical", "choices": "auto"}}, "regression")
    assert space.dimensions["loss"].choices[0] == "mean_squared_error"
    assert "huber" in space.dimensions["loss"].choices
