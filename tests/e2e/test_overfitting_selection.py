"""Overfitting-aware selection and k-fold scores, end to end on tiny real models: the picks are
checked against the trials' own stored values, the Pareto front against one computed here, and
the cross-validated value against its logged folds."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import TINY, cli

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

STORAGE = "sqlite:///experiments/plants/optuna.db"


def load() -> optuna.Study:
    return optuna.load_study(study_name="plants", storage=STORAGE)


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def best_yaml() -> dict:
    return yaml.safe_load(Path("experiments/plants/best.yaml").read_text())["best"]


def report_rows(capsys) -> dict[int, dict[str, str]]:
    assert cli(["report", "--csv", "table.csv"]) == 0
    out = capsys.readouterr().out
    with Path("table.csv").open() as f:
        return {int(r["trial"]): r for r in csv.DictReader(f)}, out


def test_constrained_picks_the_best_feasible_trial_everywhere(in_tmp, capsys):
    # max_gap 0: feasible = validation no worse than training; on tiny data both kinds occur often.
    assert cli(["sweep", *TINY, "study.n_trials=4", "selection=constrained", "selection.max_gap=0.0"]) == 0
    study = load()
    trials = complete(study)
    assert trials
    gaps = {t.number: flat_attrs(t.user_attrs)["gap_log_loss"] for t in trials}
    for t in trials:  # Optuna holds the constraint the sampler steers by: the gap's excess
        assert t.constraints == {"gap": pytest.approx(gaps[t.number])}
        assert gaps[t.number] == pytest.approx(
            flat_attrs(t.user_attrs)["val_log_loss"] - flat_attrs(t.user_attrs)["train_log_loss"]
        )
    feasible = [t for t in trials if gaps[t.number] <= 0.0]
    if feasible:
        expected = min(feasible, key=lambda t: (t.value, t.number)).number
    else:
        expected = min(trials, key=lambda t: (gaps[t.number], t.value, t.number)).number
    best = best_yaml()
    assert best["trial"] == expected
    assert best["selection"]["mode"] == "constrained" and best["selection"]["max_gap"] == 0.0
    assert best["selection"]["reason"].startswith("best val_log_loss among" if feasible else "no trial has")
    rows, out = report_rows(capsys)
    assert {n: r["feasible"] for n, r in rows.items() if n in gaps} == {
        n: "yes" if g <= 0.0 else "no" for n, g in gaps.items()
    }
    assert next(iter(rows)) == expected  # the pick heads the table
    assert f"picked trial {expected}: " in out

    # With a limit no trial meets, the same trials fall back to the smallest violation.
    from tuning.config.selection import Selection
    from tuning.results.optuna_sqlite import read_study
    from tuning.study.selection import pick

    summary = read_study("experiments/plants/optuna.db", "plants")
    chosen, reason = pick(summary, Selection("constrained", min(gaps.values()) - 1.0))
    assert chosen.number == min(gaps, key=lambda n: (gaps[n], study.trials[n].value))
    assert reason.startswith("no trial has gap_log_loss <= ")


def test_pareto_two_objectives_front_pick_and_mlflow(in_tmp, capsys, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{in_tmp}/experiments/mlflow.db"  # absolute: MLflow caches one engine per URI
    args = [*TINY, "tracking=mlflow", f"tracking.uri={uri}", "study.n_trials=4", "selection=pareto"]
    args.append("selection.max_gap=0.02")
    assert cli(["sweep", *args]) == 0
    study = load()
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    trials = complete(study)
    assert len(trials) == 4  # pruning is off: every trial trains to its own early stop
    points = {}
    for t in trials:
        assert not t.intermediate_values
        gap = flat_attrs(t.user_attrs)["gap_log_loss"]
        assert t.values == pytest.approx([flat_attrs(t.user_attrs)["val_log_loss"], max(gap, 0.0)])
        points[t.number] = (t.values[0], t.values[1], gap)
    front = {
        n
        for n, p in points.items()
        if not any(q[0] <= p[0] and q[1] <= p[1] and q[:2] != p[:2] for q in points.values())
    }
    assert front == {t.number for t in study.best_trials}  # Optuna's own front agrees
    within = [n for n in front if points[n][2] <= 0.02]
    expected = (
        min(within, key=lambda n: (points[n][0], n))
        if within
        else min(front, key=lambda n: (points[n][2], points[n][0], n))
    )
    assert best_yaml()["trial"] == expected
    rows, _ = report_rows(capsys)
    assert {n for n, r in rows.items() if r["pareto_rank"] == "0"} == front

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("plants")
    parent = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'sweep'")[0]
    assert parent.data.params["selection"] == "pareto" and parent.data.params["max_gap"] == "0.02"
    children = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'trial'")
    ranks = {int(r.data.tags["tuning.trial"]): r.data.tags.get("tuning.pareto_rank") for r in children}
    assert {n for n, r in ranks.items() if r == "0"} == front
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/selection.png" in plots and "plots/optimization_history.png" in plots


def test_cv_value_is_the_mean_of_the_logged_folds_and_train_refits(in_tmp, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{in_tmp}/experiments/mlflow.db"  # absolute: MLflow caches one engine per URI
    args = [*TINY, "tracking=mlflow", f"tracking.uri={uri}", "study.n_trials=2", "cv.folds=3", "pruner=none"]
    assert cli(["sweep", *args]) == 0
    study = load()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("plants")
    children = {
        int(r.data.tags["tuning.trial"]): r
        for r in client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'trial'")
    }
    parent = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'sweep'")[0]
    assert parent.data.params["cv_folds"] == "3"
    for t in complete(study):
        folds = flat_attrs(t.user_attrs)["cv_values"]
        assert len(folds) == 3 and flat_attrs(t.user_attrs)["cv_folds"] == 3
        assert t.value == pytest.approx(float(np.mean(folds)))
        assert flat_attrs(t.user_attrs)["cv_std"] == pytest.approx(float(np.std(folds)))
        assert flat_attrs(t.user_attrs)["best_epoch"] == max(
            1, round(float(np.mean(flat_attrs(t.user_attrs)["cv_best_epochs"])))
        )
        # 320 train + validation rows of plants' 400: each fold trains on about two thirds of them
        assert flat_attrs(t.user_attrs)["cv_train_rows"] in (213, 214)
        metrics = children[t.number].data.metrics
        assert [metrics[f"cv_fold_{k}"] for k in (1, 2, 3)] == pytest.approx(folds)
        assert metrics["cv_std"] == pytest.approx(flat_attrs(t.user_attrs)["cv_std"])
        assert math.isfinite(metrics["objective"])
    assert best_yaml()["cv_values"]
    # Each trial's line shows the folds' mean and spread, not a bare number that reads as one split.
    out = capsys.readouterr().out
    assert (
        "data 'plants': binary, 2 features, k-fold on train+validation (k=3, 320 rows), test 80 held out"
        in out
    )
    for t in complete(study):
        mean = f"{t.value:.4g}"
        spread = f"{flat_attrs(t.user_attrs)['cv_std']:.{len(mean.split('.')[1])}f}"  # to the mean's decimals
        assert f" trial {t.number} COMPLETE val_log_loss={mean} ± {spread} (3 folds) | best " in out
    assert cli(["train", "study=plants", "tracking=none", "final.refit=true"]) == 0
    from tuning.final.refit import refit_epochs

    made = yaml.safe_load(Path("experiments/plants/best.yaml").read_text())
    best, batch = made["best"], made["search_space"]["batch_size"]

    # The refit makes the updates the folds chose: best_epoch passes over cv_train_rows rows.
    epochs = refit_epochs(best["best_epoch"], best["cv_train_rows"], 320 - best["cv_train_rows"], batch)
    out = capsys.readouterr().out
    assert (
        f"for {epochs} epochs: as many weight updates as the best trial's {best['best_epoch']} epochs on "
        in out
    )
    assert f"on {best['cv_train_rows']} rows" in out and "the mean of its 3 folds" in out
    assert Path("experiments/plants/final/model.keras").is_file()


def test_folds_beyond_the_smallest_class_are_refused_before_any_trial(in_tmp, capsys):
    assert cli(["sweep", *TINY, "cv.folds=500"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cv.folds: 500 is more than the "), err
    assert "rows of the smallest class" in err[-1]
    assert not Path("experiments/plants/optuna.db").exists()
