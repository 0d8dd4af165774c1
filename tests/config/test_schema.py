"""The typed settings: conf/ and the code's defaults are one set of values, and each part refuses
a bad value with one line naming its key."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import settings

from tuning.config import Settings, parse
from tuning.config.schema import (
    BudgetConfig,
    EarlyStoppingConfig,
    FinalConfig,
    SplitConfig,
    StudyConfig,
    TrackingConfig,
    TrainingConfig,
    WarmStartConfig,
)
from tuning.errors import ConfigError


def defaults(cls: type) -> dict[str, object]:
    """The dataclass's own defaults (fields without one are left out)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.fixture(scope="module")
def composed() -> Settings:
    return parse(settings(tiny=False))


@pytest.mark.parametrize(
    ("part", "cls"),
    [
        ("split", SplitConfig),
        ("study", StudyConfig),
        ("training", TrainingConfig),
        ("tracking", TrackingConfig),
        ("final", FinalConfig),
        ("budget", BudgetConfig),
        ("warm_start", WarmStartConfig),
    ],
)
def test_the_code_defaults_are_those_of_conf(composed, part, cls):
    parsed = getattr(composed, part)
    assert isinstance(parsed, cls)
    differ = {k: (v, getattr(parsed, k)) for k, v in defaults(cls).items() if getattr(parsed, k) != v}
    assert differ == {}, f"conf/ and {cls.__name__} disagree (code, conf): {differ}"


def test_early_stopping_defaults_match_conf(composed):
    assert composed.training.early_stopping == EarlyStoppingConfig()


def test_parsed_settings_are_typed_and_frozen(composed):
    assert composed.engine.name == "optuna" and composed.sampler.name == "tpe"
    assert composed.sampler.options["n_startup_trials"] == 10
    assert composed.pruner.name == "successive_halving"
    assert composed.folds is None and composed.selection.mode == "best"
    assert composed.study.name == "plants" and composed.study_dir == "experiments/plants"
    with pytest.raises(dataclasses.FrozenInstanceError):
        composed.study.n_trials = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("training.steps_per_execution=0", "training.steps_per_execution", "must be an integer >= 1"),
        ("training.kept_models=-1", "training.kept_models", "must be an integer >= 0"),
        ("training.deterministic=maybe", "training.deterministic", "must be true or false"),
        ("training.checkpoints=maybe", "training.checkpoints", "must be true or false"),
        ("training.early_stopping.min_delta=abc", "training.early_stopping.min_delta", "must be a number"),
        ("study.timeout=-3", "study.timeout", "must be a positive number of seconds or null"),
        ("study.top=0", "study.top", "must be an integer >= 1"),
        ("study.heartbeat_interval=0", "study.heartbeat_interval", "must be an integer >= 1 or null"),
        ("tracking=mlflow tracking.plotlyjs=cdn", "tracking.plotlyjs", "allowed: none, embed"),
        (
            "tracking=mlflow tracking.learning_curves=-1",
            "tracking.learning_curves",
            "must be an integer >= 0",
        ),
        ("final.epochs=0", "final.epochs", "must be an integer >= 1 or null"),
        ("verbose=2", "verbose", "must be true or false"),
        ("budget.epochs=0", "budget.epochs", "must be an integer >= 1 or null"),
        ("budget.minutes=-1", "budget.minutes", "must be a positive number of minutes or null"),
        ("study.n_trials=null", "study.n_trials", "null needs a budget to end the search"),
        ("warm_start.top=0", "warm_start.top", "must be an integer >= 1 or null"),
        (
            "training.simulate_epoch_seconds=-1",
            "training.simulate_epoch_seconds",
            "must be a number of seconds >= 0 or null",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_its_key(override, key, text):
    with pytest.raises(ConfigError) as caught:
        parse(settings(*override.split()))
    assert caught.value.key == key
    assert text in str(caught.value) and "\n" not in str(caught.value)
