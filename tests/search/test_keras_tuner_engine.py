"""The KerasTuner engine without training: the space as KerasTuner hyperparameters, its options,
what it refuses, and that checking a config imports neither keras_tuner nor TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, settings

from tuning.config import parse_space  # config first: tuning.config <-> search.space_config import circle
from tuning.errors import ConfigError

MLP = {
    "n_layers": {"type": "int", "low": 1, "high": 3},
    "units": {"type": "int", "low": 8, "high": 128, "log": True},
    "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32]},
    "epochs": {"type": "int", "low": 20, "high": 100, "step": 20},
}


@pytest.fixture(scope="module")
def kt():
    import keras_tuner

    return keras_tuner


def declared(kt, space_config):
    from tuning.search.engines.keras_tuner_space import declare

    hp = kt.HyperParameters()
    declare(parse_space(space_config), hp)
    return hp


def test_space_becomes_keras_tuner_hyperparameters(kt):
    hp = declared(kt, MLP)
    by_name = {p.name: p for p in hp.space}
    assert set(by_name) == {
        "n_layers", "units_0", "units_1", "units_2", "activation", "dropout", "learning_rate", "batch_size", "epochs",
    }  # fmt: skip
    assert (by_name["n_layers"].min_value, by_name["n_layers"].max_value) == (1, 3)
    assert by_name["units_0"].sampling == "log" and by_name["learning_rate"].sampling == "log"
    assert by_name["epochs"].step == 20 and by_name["dropout"].step == 0.1
    assert list(by_name["batch_size"].values) == [16, 32]
    assert list(by_name["activation"].values) == ["relu", "tanh"]
    # A layer's width exists only when the model has that layer.
    assert by_name["units_0"].conditions == []
    assert [(c.name, list(c.values)) for c in by_name["units_1"].conditions] == [("n_layers", [2, 3])]
    assert [(c.name, list(c.values)) for c in by_name["units_2"].conditions] == [("n_layers", [3])]
    assert hp.values["n_layers"] == 1 and "units_1" not in hp.values, "only active values are stored"


def test_oracle_points_come_back_as_our_hyperparameters(kt):
    from tuning.search.engines.keras_tuner_space import KerasTunerSuggester

    space = parse_space(MLP)
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_log_loss", "min"), hyperparameters=declared(kt, MLP), seed=3
    )
    layer_counts = set()
    for i in range(30):
        values = oracle.populate_space(str(i))["values"]
        hp = oracle.get_space()
        hp.values = values
        point = space.suggest(KerasTunerSuggester(hp, space))
        layer_counts.add(point.n_layers)
        assert len(point.units) == values["n_layers"]
        assert {k for k in values if k.startswith("units_")} == {f"units_{i}" for i in range(point.n_layers)}
        assert all(8 <= u <= 128 for u in point.units) and point.epochs in (20, 40, 60, 80, 100)
        assert 1e-4 <= point.learning_rate <= 1e-1 and point.batch_size in (16, 32)
        assert point.as_params() == {**values, "loss": "auto", "optimizer": "adam"}
    assert layer_counts == {1, 2, 3}


def test_fixed_layer_count_needs_no_conditions(kt):
    hp = declared(kt, {**MLP, "n_layers": 2})
    assert {p.name: p.conditions for p in hp.space if p.name.startswith("units")} == {
        "units_0": [],
        "units_1": [],
    }


def engine(*overrides: str):
    from tuning.config import parse
    from tuning.search.engines import make_engine

    return make_engine(parse(settings("engine=keras_tuner", *overrides)), "sqlite:///experiments/x/optuna.db")


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("engine.algorithm=grid", "engine.algorithm", "'grid' is not one of: bayesian, hyperband, random"),
        ("engine.factor=1", "engine.factor", "1; must be an integer >= 2"),
        ("engine.max_epochs=0", "engine.max_epochs", "0; must be an integer >= 1 or null"),
        ("engine.alpha=0", "engine.alpha", "0; must be a number > 0.0"),
        ("+engine.tries=3", "engine.tries", "not an option of engine=keras_tuner; allowed: name, algorithm"),
        ("study.storage=sqlite:///s.db", "study.storage", "keeps its study in files under"),
        ("pruner=hyperband", "pruner", "'hyperband': KerasTuner has no pruners"),
        ("sampler=random", "sampler", "'random' is an Optuna sampler; with engine=keras_tuner choose"),
    ],
)
def test_bad_options_are_one_config_error(override, key, text):
    with pytest.raises(ConfigError) as err:
        engine(override)
    assert err.value.key == key and text in err.value.message


def test_options_and_hyperband_budget():
    hb = engine("engine.algorithm=hyperband")
    assert hb.options.max_epochs == 3, "the space's largest epochs (100), capped by training.max_epochs=3"
    assert engine("engine.algorithm=hyperband", "training.max_epochs=null").options.max_epochs == 100
    assert hb.describe() == "keras_tuner: hyperband, max_epochs 3, factor 3"
    assert engine().describe() == "keras_tuner: bayesian, alpha 0.0001, beta 2.6"
    assert engine("pruner=none").options.algorithm == "bayesian"


def test_bad_options_on_the_command_line_are_one_line_exit_2(in_tmp, capsys):
    assert cli(["sweep", "engine=keras_tuner", "engine.algorithm=grid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: engine.algorithm: 'grid' is not one of: bayesian, hyperband, random"]
    assert not Path("experiments").exists(), "nothing written"


def test_checking_a_keras_tuner_config_imports_neither_keras_tuner_nor_tensorflow():
    code = (
        "import sys\n"
        "from tuning.config import compose, resolved\n"
        "from tuning.commands.sweep import check\n"
        "cfg = resolved(compose('config', ['engine=keras_tuner', 'engine.algorithm=hyperband']))\n"
        "space, engine = check(cfg)\n"
        "engine.summary()\n"
        "print(sorted(m for m in ('keras_tuner', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_second_worker_on_one_study_is_refused_while_the_first_runs(in_tmp, kt):
    from tuning.study.keras_tuner_files import only_worker

    def lock(e):
        return only_worker(e.project, e.study_config.name)

    first = engine()
    with lock(first):
        with pytest.raises(ConfigError) as err, lock(engine()):
            pass
        assert err.value.key == "study.name"
        assert err.value.message.startswith("'plants-keras_tuner' is being searched by another process")
    with lock(engine()):  # released when the first ends
        pass


def test_hyperband_schedule_is_keras_tuners():
    from tuning.search.engines.keras_tuner_space import (
        KerasTunerOptions,
        hyperband_brackets,
        hyperband_short,
        hyperband_trials,
    )

    # max_epochs=3, factor=3: 3 trials for 1 epoch, the best 1 for 3; then 2 trials for 3 epochs
    assert hyperband_brackets(3, 3) == [[(3, 1), (1, 3)], [(2, 3)]]
    assert hyperband_trials(3, 3) == (6, 4)
    # the default sweep's (epochs up to 100): 50 trials never leave the first bracket's 2-epoch round
    assert hyperband_brackets(100, 3)[0] == [(98, 2), (33, 4), (11, 12), (4, 34), (2, 100)]
    assert hyperband_trials(100, 3) == (254, 147)
    assert hyperband_short(KerasTunerOptions("hyperband", max_epochs=100, factor=3), 254) is None
    assert hyperband_short(KerasTunerOptions("hyperband", max_epochs=100, factor=3), 50) == (
        "warning: study.n_trials=50 stops Hyperband before one whole iteration, which needs "
        "study.n_trials=254 (5 brackets for max_epochs=100, factor=3): its first bracket trains 98 trials "
        "for 2 epoch(s) each, and no trial trains 100 epochs until 147 trials have run; raise "
        "study.n_trials, or lower engine.max_epochs"
    )


@pytest.mark.parametrize(("max_epochs", "factor"), [(3, 3), (9, 3), (8, 2)])
def test_hyperband_schedule_matches_the_oracle_run_to_its_end(in_tmp, kt, max_epochs, factor):
    """KerasTuner's own HyperbandOracle, one iteration, through its public API as our engine
    drives it: the budgets it hands out, in order, are the computed schedule."""
    from keras_tuner.engine.base_tuner import BaseTuner
    from keras_tuner.engine.trial import TrialStatus

    from tuning.search.engines.keras_tuner_space import hyperband_brackets, hyperband_trials

    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("score", "min"), hyperparameters=hp, max_epochs=max_epochs,
        factor=factor, hyperband_iterations=1, seed=1,
    )  # fmt: skip
    oracle = BaseTuner(oracle, directory=str(in_tmp), project_name="hb").oracle
    budgets = []
    while (trial := oracle.create_trial("tuner0")).status == TrialStatus.RUNNING:
        values = trial.hyperparameters.values
        budgets.append(values["tuner/epochs"])
        oracle.update_trial(trial.trial_id, {"score": values["x"]})
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
    expected = [
        epochs
        for bracket in hyperband_brackets(max_epochs, factor)
        for n, epochs in bracket
        for _ in range(n)
    ]
    assert budgets == expected
    assert len(budgets) == hyperband_trials(max_epochs, factor)[0]
    assert budgets.index(max_epochs) + 1 == hyperband_trials(max_epochs, factor)[1]
