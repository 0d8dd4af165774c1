"""model=custom end to end: a user's KerasTuner-style builder swept by Optuna on tiny data,
tracked in MLflow, resumed, trained and used for predictions; each way a builder is refused."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import TINY, cli

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

# KerasTuner's style: build(hp), no dataset; the Input shape is left to the first call.
KT_FUNCTION = """
import keras

def build(hp):
    model = keras.Sequential()
    for i in range(hp.Int("layers", 1, 2)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 4, 16, step=4), activation="relu"))
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(hp.Float("rate", 0.1, 0.5)))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
"""

# A KerasTuner HyperModel, functional model, regression: used unchanged.
HYPERMODEL = """
import keras
import keras_tuner


class Regressor(keras_tuner.HyperModel):
    def build(self, hp):
        inputs = keras.Input(shape=(10,))
        x = keras.layers.Dense(hp.Choice("width", [8, 16]), activation="relu")(inputs)
        outputs = keras.layers.Dense(1)(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        return model
"""


def write_module(name: str, code: str) -> str:
    """``code`` as ./<name>.py (a fresh name per test: Python caches imported modules)."""
    Path(f"{name}.py").write_text(textwrap.dedent(code))
    sys.modules.pop(name, None)
    return name


def test_a_keras_tuner_style_builder_sweeps_tracks_resumes_trains_and_predicts(in_tmp, capsys):
    from mlflow import MlflowClient

    write_module("kt_models", KT_FUNCTION)
    # pruner=none: every trial completes (ASHA, the default, may stop one at epoch 2 of 3)
    args = [
        *TINY,
        "tracking=mlflow",
        "model=custom",
        "model.build=kt_models.build",
        "sampler=random",
        "pruner=none",
        "training.kept_models=4",  # the built-in MLP's: a custom model's trials say why not
    ]
    assert cli(["sweep", *args]) == 0
    storage = "sqlite:///experiments/plants-kt_models/optuna.db"
    study = optuna.load_study(study_name="plants-kt_models", storage=storage)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    # kept compiled models (training.kept_models) are for the built-in MLP: the log says so, once
    log = "".join(p.read_text() for p in Path("experiments/plants-kt_models/runs").glob("*/sweep.log"))
    assert (
        log.count(
            "model=custom: each trial builds its own model (training.kept_models is for the built-in MLP)"
        )
        == 1
    )
    for t in trials:
        assert 0.0 < t.value < 2.0 and flat_attrs(t.user_attrs)["val_log_loss"] == pytest.approx(t.value)
        layers = t.params["layers"]
        assert {f"units_{i}" for i in range(layers)} <= set(t.params)
        assert ("rate" in t.params) == t.params["dropout"]  # conditional: only asked when active
        units = [t.params[f"units_{i}"] for i in range(layers)]
        widths = [2, *units, 1]
        assert flat_attrs(t.user_attrs)["n_params"] == sum(
            a * b + b for a, b in zip(widths, widths[1:], strict=False)
        )

    # MLflow: one child run per trial, its params named as the builder's hp names.
    # Absolute: MLflow caches its store per URI, and a relative one would reach an earlier test's file.
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp}/experiments/mlflow.db")
    experiment = client.get_experiment_by_name("plants-kt_models")
    runs = client.search_runs([experiment.experiment_id])
    children = {int(r.data.params["seed"]) - 42: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == [0, 1, 2]
    for t in trials:
        params = children[t.number].data.params
        assert {k: params[k] for k in t.params} == {k: str(v) for k, v in t.params.items()}
        assert params["batch_size"] == str(t.params["batch_size"])

    # best.yaml: the winning hp values and the builder's path; only training settings in search_space.
    best = yaml.safe_load(Path("experiments/plants-kt_models/best.yaml").read_text())
    winner = study.best_trial
    assert best["model"] == {
        "name": "custom",
        "build": "kt_models.build",
        "hp": {k: v for k, v in winner.params.items() if k not in ("batch_size", "epochs")},
    }
    assert best["search_space"] == {
        "batch_size": winner.params["batch_size"],
        "epochs": winner.params["epochs"],
    }

    # Resume: the three trials stay as they are, one more runs.
    assert cli(["sweep", *args, "study.n_trials=4"]) == 0
    again = optuna.load_study(study_name="plants-kt_models", storage=storage).trials
    assert len(again) == 4 and [(t.params, t.value) for t in again[:3]] == [
        (t.params, t.value) for t in trials
    ]

    # The final model, rebuilt by the same function from best.yaml, and predictions from it.
    capsys.readouterr()
    assert cli(["train", "study=plants-kt_models", "tracking=none"]) == 0
    meta = json.loads(Path("experiments/plants-kt_models/final/meta.json").read_text())
    assert meta["builder"] == "kt_models.build"
    assert all(math.isfinite(v) for v in meta["metrics"]["test"].values())
    hp = yaml.safe_load(Path("experiments/plants-kt_models/best.yaml").read_text())["model"]["hp"]
    assert {k: meta["hyperparameters"][k] for k in hp} == hp
    pd.DataFrame({"height": [1.0, 5.0], "branches": [2, 9]}).to_csv("rows.csv", index=False)
    assert cli(["predict", "model=experiments/plants-kt_models/final", "data.path=rows.csv"]) == 0
    out = pd.read_csv("rows.predictions.csv")
    assert set(out["predicted_species"]) <= {"A", "B"}
    assert ((out["probability_A"] + out["probability_B"]) - 1).abs().max() < 1e-6


def test_a_keras_tuner_hypermodel_runs_unchanged_and_trains_in_target_units(in_tmp):
    write_module("kt_hypermodel", HYPERMODEL)
    args = ["data=diabetes", "training.max_epochs=2", "study.n_trials=2", "tracking=none"]
    args += ["model=custom", "model.build=kt_hypermodel.Regressor", "search_space.epochs=5"]
    assert cli(["sweep", *args]) == 0
    study = optuna.load_study(
        study_name="diabetes-kt_hypermodel", storage="sqlite:///experiments/diabetes-kt_hypermodel/optuna.db"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    for t in study.trials:  # val_rmse in the target's units (diabetes: tens to ~150)
        assert 20.0 < t.value < 400.0 and set(t.params) == {"batch_size", "width"}
    assert cli(["train", "study=diabetes-kt_hypermodel", "tracking=none"]) == 0
    meta = json.loads(Path("experiments/diabetes-kt_hypermodel/final/meta.json").read_text())
    assert 20.0 < meta["metrics"]["test"]["rmse"] < 400.0


RAISES_ON_ODD = """
import keras

def build(hp, dataset):
    k = hp.Int("k", 0, 9)
    if k % 2:
        raise ValueError(f"odd k={k}")
    model = keras.Sequential([keras.Input(shape=dataset.input_shape), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model
"""


def test_a_builder_raising_for_some_values_fails_that_trial_and_the_study_goes_on(in_tmp):
    write_module("odd_models", RAISES_ON_ODD)
    args = [*TINY, "training.max_epochs=1", "study.n_trials=6", "sampler=random", "pruner=none"]
    code = cli(["sweep", *args, "model=custom", "model.build=odd_models.build"])
    study = optuna.load_study(
        study_name="plants-odd_models", storage="sqlite:///experiments/plants-odd_models/optuna.db"
    )
    states = {t.number: (t.params["k"] % 2, t.state.name) for t in study.trials}
    assert {odd for odd, _ in states.values()} == {0, 1}, "seeded random draws both kinds"
    for t in study.trials:
        if t.params["k"] % 2:
            assert t.state.name == "FAIL"
            assert t.user_attrs["fail_reason"] == f"odd_models.build raised ValueError: odd k={t.params['k']}"
        else:
            assert t.state.name == "COMPLETE" and math.isfinite(t.value)
    assert code == 3  # fewer than n_trials finished: the run says so, the study is kept


BROKEN = {
    "no_model": "def build(hp):\n    return 'not a model'\n",
    "uncompiled": "import keras\ndef build(hp, dataset):\n"
    "    return keras.Sequential([keras.Input(shape=dataset.input_shape), keras.layers.Dense(1, activation='sigmoid')])\n",
    "wrong_output": "import keras\ndef build(hp, dataset):\n"
    "    m = keras.Sequential([keras.Input(shape=dataset.input_shape), keras.layers.Dense(2, activation='softmax')])\n"
    "    m.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n    return m\n",
    "linear_binary": "import keras\ndef build(hp, dataset):\n"
    "    m = keras.Sequential([keras.Input(shape=dataset.input_shape), keras.layers.Dense(1)])\n"
    "    m.compile(optimizer='adam', loss='binary_crossentropy')\n    return m\n",
    "twice": "import keras\ndef build(hp, dataset):\n    hp.Int('units', 1, 8)\n    hp.Int('units', 1, 16)\n",
    "raises": "def build(hp):\n    raise RuntimeError('no GPU here')\n",
    "fits": "import keras_tuner\nclass Own(keras_tuner.HyperModel):\n"
    "    def build(self, hp):\n        pass\n    def fit(self, hp, model, *a, **k):\n        pass\n",
}


@pytest.mark.parametrize(
    "module, build, message",
    [
        ("no_model", "build", "build returned str, not a keras.Model; build() must return the model"),
        ("uncompiled", "build", "build returned a model that is not compiled; call model.compile("),
        ("wrong_output", "build", "build outputs shape (None, 2); a binary target needs 1 sigmoid unit"),
        (
            "linear_binary",
            "build",
            "build ends with a linear activation; a binary target needs 1 sigmoid unit",
        ),
        ("twice", "build", "asks for 'units' twice with different ranges: Int(1, 8) and Int(1, 16)"),
        ("raises", "build", "build raised RuntimeError: no GPU here (with each hp's default: {})"),
        ("fits", "Own", "Own overrides HyperModel.fit(hp, model, ...), which tuning does not call"),
        ("no_model", "nope", "module 'b_no_model' has no 'nope'; it defines: build"),
    ],
)
def test_a_broken_builder_is_one_line_exit_2_and_no_study(in_tmp, capsys, module, build, message):
    name = write_module(f"b_{module}", BROKEN[module])
    path = f"{name}.{build}"
    assert cli(["sweep", *TINY, "model=custom", f"model.build={path}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"error: model.build: {name}.") and message in lines[-1], lines
    assert not list(Path("experiments").glob("*/optuna.db")), "nothing stored"


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["model.build=no_such_module.build"],
            "error: model.build: no_such_module.build: no module 'no_such_module'",
        ),
        (["model.build=not a path"], "error: model.build: 'not a path' is not a dotted path"),
        ([], "error: model.build: is required with model=custom: set model.build=my_models.build"),
        (
            ["model.build=json.loads", "search_space=mlp"],
            "error: search_space.n_layers: not a setting of model=custom (its builder draws the "
            "model's hyperparameters); allowed: batch_size, epochs",
        ),
    ],
)
def test_config_mistakes_are_caught_before_anything_starts(in_tmp, capsys, args, line):
    assert cli(["sweep", *TINY, "model=custom", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(line), err
    assert not Path("experiments").exists()


def test_the_same_builder_runs_under_the_keras_tuner_engine(in_tmp):
    """engine=keras_tuner: KerasTuner's own trials feed the builder (declared by one build, as
    KerasTuner's tuners do), trials are trained by our runner, best.yaml rebuilds the winner."""
    from tuning.study.keras_tuner_files import read_project

    write_module("kt_engine_models", KT_FUNCTION)
    args = [*TINY, "engine=keras_tuner", "engine.algorithm=random", "model=custom"]
    args += ["model.build=kt_engine_models.build", "study.n_trials=4"]
    assert cli(["sweep", *args]) == 0
    name = "plants-keras_tuner-kt_engine_models"
    study = read_project(Path("experiments") / name / "keras_tuner", name)
    assert study is not None and [t.state for t in study.trials] == ["COMPLETE"] * 4
    for t in study.trials:
        assert 0.0 < t.value < 2.0 and t.user_attrs["val_log_loss"] == pytest.approx(t.value)
        assert {"layers", "units_0", "dropout", "lr", "batch_size", "epochs"} <= set(t.params)
        assert {f"units_{i}" for i in range(t.params["layers"])} <= set(t.params)
    # Random search samples the builder's names from the first trial on (they were declared).
    assert len({t.params["lr"] for t in study.trials}) == 4
    best = yaml.safe_load(Path(f"experiments/{name}/best.yaml").read_text())
    winner = study.best()
    assert winner is not None and best["model"]["build"] == "kt_engine_models.build"
    assert best["model"]["hp"] == {
        k: v for k, v in winner.params.items() if k not in ("batch_size", "epochs")
    }
    assert cli(["train", f"study={name}", "tracking=none"]) == 0
    meta = json.loads(Path(f"experiments/{name}/final/meta.json").read_text())
    assert all(math.isfinite(v) for v in meta["metrics"]["test"].values())


def test_the_digits_cnn_example_runs_from_the_repository_root(tmp_path, monkeypatch):
    """`tuning sweep +experiment=digits_cnn` on tiny settings, from the repository root."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    tiny = ["training.max_epochs=1", "study.n_trials=2", "tracking=none", f"paths.root={tmp_path}"]
    assert cli(["sweep", "+experiment=digits_cnn", *tiny]) == 0
    study = optuna.load_study(study_name="digits_cnn", storage=f"sqlite:///{tmp_path}/digits_cnn/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    for t in study.trials:
        assert 0.0 < t.value < 3.0 and {"conv_layers", "filters_0", "learning_rate"} <= set(t.params)


def test_trials_run_without_tracking_are_backfilled_with_the_builders_param_names(in_tmp):
    from mlflow import MlflowClient

    write_module("late_models", KT_FUNCTION)
    args = [
        *TINY,
        "training.max_epochs=1",
        "study.n_trials=2",
        "model=custom",
        "model.build=late_models.build",
    ]
    assert cli(["sweep", *args]) == 0  # tracking=none (TINY)
    assert cli(["sweep", *args, "tracking=mlflow"]) == 0  # nothing left to train: back-fills MLflow
    study = optuna.load_study(
        study_name="plants-late_models", storage="sqlite:///experiments/plants-late_models/optuna.db"
    )
    # Absolute: MLflow caches its store per URI, and a relative one would reach an earlier test's file.
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp}/experiments/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("plants-late_models").experiment_id])
    children = {
        int(r.data.params["seed"]) - 42: r.data.params for r in runs if "mlflow.parentRunId" in r.data.tags
    }
    assert sorted(children) == [0, 1]
    for t in study.trials:
        assert {k: children[t.number][k] for k in t.params} == {k: str(v) for k, v in t.params.items()}
        assert "units" not in children[t.number] and "activation" not in children[t.number]  # no MLP defaults
