"""Trials are ranked on one scale: the task's selection metric, whatever loss each trial trains
with; regression trains on a standardized target and reports errors in the target's units.

Values are checked against numbers computed here from the models' own predictions (scikit-learn's
log loss, numpy's RMSE), not against what the code reports about itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import TINY, cli, settings

from tuning.config import DataConfig
from tuning.config.schema import SplitConfig
from tuning.errors import ConfigError
from tuning.study.summary import flat_attrs

# --- fast: what ranks trials, and what is refused -------------------------------------------


def test_default_metric_is_the_tasks_selection_metric():
    from tuning.config import for_task

    cfg = settings()
    assert cfg["study"]["metric"] == "auto"
    binary = for_task(cfg, "binary")
    assert binary["study"]["metric"] == "val_log_loss" and binary["study"]["direction"] == "minimize"
    assert binary["training"]["early_stopping"]["monitor"] == "val_log_loss"
    assert for_task(cfg, "regression")["study"]["metric"] == "val_rmse"
    accuracy = for_task(settings("study.metric=val_accuracy"), "multiclass")
    assert accuracy["study"]["direction"] == "maximize"
    assert accuracy["training"]["early_stopping"]["monitor"] == "val_accuracy"


def test_val_loss_over_several_loss_functions_is_refused(in_tmp, capsys):
    assert cli(["sweep", *TINY, "study.metric=val_loss"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("error: study.metric: val_loss is each trial's own loss function")
    assert "binary_crossentropy, binary_focal_crossentropy" in err
    assert "study.metric=auto (val_log_loss" in err and "search_space.loss=binary_crossentropy" in err
    assert not Path("experiments").exists()


def test_val_loss_with_one_loss_function_is_accepted():
    from tuning.commands.sweep import check

    parsed, _ = check(settings("study.metric=val_loss", "search_space.loss=binary_focal_crossentropy"))
    assert parsed.space.fixed["loss"] == "binary_focal_crossentropy"
    with pytest.raises(ConfigError, match="on different scales"):
        check(settings("study.metric=loss"))


# --- slow: sweeps on real (tiny) models ------------------------------------------------------


def rerun(study: optuna.Study, number: int, cfg: dict):
    """Train trial ``number`` again, exactly as the sweep did (same parameters, same seed)."""
    from optuna.trial import FixedTrial

    from tuning.config import parse, with_task
    from tuning.data import load_dataset
    from tuning.search.trial import fit_trial

    trial = study.trials[number]
    parsed = parse(cfg)
    dataset = load_dataset(parsed.data, parsed.split, parsed.seed)
    parsed = with_task(parsed, dataset.task)
    hp = parsed.space.suggest(FixedTrial(trial.params))
    model, _ = fit_trial(hp, dataset, parsed.training, seed=flat_attrs(trial.user_attrs)["seed"])
    return model, dataset, hp


@pytest.mark.slow
def test_two_loss_functions_compete_and_the_pick_follows_the_log_loss(in_tmp):
    from sklearn.metrics import log_loss

    args = [*TINY, "study.n_trials=4", "pruner=none", "seed=3",
            "search_space.loss.choices=[binary_crossentropy,binary_focal_crossentropy]"]  # fmt: skip
    assert cli(["sweep", *args]) == 0
    study = optuna.load_study(study_name="plants", storage="sqlite:///experiments/plants/optuna.db")
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert {t.params["loss"] for t in trials} == {"binary_crossentropy", "binary_focal_crossentropy"}
    cfg = settings(*args[len(TINY) :])
    recomputed = {}
    for t in trials:
        assert (
            flat_attrs(t.user_attrs)["metric"] == "val_log_loss"
            and flat_attrs(t.user_attrs)["direction"] == "minimize"
        )
        model, dataset, _ = rerun(study, t.number, cfg)
        p = model.predict(dataset.x_val, verbose=0).reshape(-1).astype("float64")
        recomputed[t.number] = log_loss(dataset.y_val, p)
        assert t.value == pytest.approx(recomputed[t.number], rel=1e-3)
        if t.params["loss"] == "binary_focal_crossentropy":  # its own loss is on another scale
            assert flat_attrs(t.user_attrs)["val_loss"] < 0.8 * t.value
    assert study.best_trial.number == min(recomputed, key=recomputed.get)


@pytest.mark.slow
def test_regression_in_thousands_trains_with_mse_and_sgd_and_reports_its_units(in_tmp):
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"rooms": rng.normal(size=n), "age": rng.normal(size=n)})
    frame["price"] = 20_000 + 8_000 * frame.rooms - 3_000 * frame.age**2 + rng.normal(0, 500, n)
    frame.to_csv("prices.csv", index=False)
    # Unscaled, one SGD step on a mean squared error of ~4e8 sends the weights to infinity.
    args = ["data=csv", "data.path=prices.csv", "data.target=price", "tracking=none", "pruner=none",
            "study.n_trials=2", "training.max_epochs=8", "search_space.loss=mean_squared_error",
            "search_space.optimizer=sgd", "search_space.learning_rate=0.05",
            "search_space.batch_size=32", "training.early_stopping.min_delta=5"]  # fmt: skip
    assert cli(["sweep", *args]) == 0
    study = optuna.load_study(study_name="prices", storage="sqlite:///experiments/prices/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    best = study.best_trial
    assert flat_attrs(best.user_attrs)["metric"] == "val_rmse"
    assert 300 < best.value < frame.price.std()  # in prices, and better than predicting the mean

    # The final model (no refit: exactly the best trial) predicts prices; its RMSE on the
    # validation rows, computed here, is the trial's value.
    assert cli(["train", "study=prices", "final.refit=false", "tracking=none"]) == 0
    from tuning.data import load_dataset
    from tuning.final.saved import load_final

    saved = load_final("experiments/prices/final")
    dataset = load_dataset(
        DataConfig.parse(settings(*args, tiny=False)["data"]), SplitConfig.parse(settings()["split"]), 42
    )
    pred = saved.model.predict(dataset.x_val, verbose=0).reshape(-1).astype("float64")
    assert best.value == pytest.approx(math.sqrt(np.mean((pred - dataset.y_val) ** 2)), rel=1e-3)
    meta = json.loads(Path("experiments/prices/final/meta.json").read_text())
    assert meta["target_scaling"]["mean"] == pytest.approx(dataset.y_train.mean(), rel=1e-5)
    assert meta["target_scaling"]["scale"] == pytest.approx(dataset.y_train.std(), rel=1e-5)

    # tuning predict writes prices, not standardized values.
    frame.drop(columns=["price"]).head(50).to_csv("new.csv", index=False)
    assert cli(["predict", "model=experiments/prices/final", "data.path=new.csv", "output=out.csv"]) == 0
    out = pd.read_csv("out.csv")
    assert np.sqrt(np.mean((out.predicted_price - frame.price.head(50)) ** 2)) < 2 * best.value
