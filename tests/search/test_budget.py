"""`budget.epochs` / `budget.minutes` on real tiny sweeps: counted over every worker and resume,
read from the study's trials, the sweep stopped with its line, and a resume that finds the budget
spent trains nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import optuna
import pytest
from conftest import cli

from tuning.config.schema import BudgetConfig
from tuning.results.table import trials_table
from tuning.search.budget import exhausted, spent
from tuning.search.engines.optuna_study import load_summary
from tuning.study.summary import TrialSummary, flat_attrs

URL = "sqlite:///experiments/plants/optuna.db"
# No pruner and one epoch count per trial: what ends a trial early is the budget alone.
ARGS = ("data.n_samples=200", "tracking=none", "pruner=none", "study.n_trials=null", "search_space.epochs=20")


def trained() -> list[int]:
    """The trials table's epochs column (every trial of the study)."""
    return [int(n or 0) for n in trials_table(load_summary(URL, "plants")).column("epochs_trained")]


@pytest.mark.slow
def test_budget_epochs_holds_across_two_workers_and_a_resume(in_tmp):
    # A rehearsal (each epoch a 0.05 s sleep, no TensorFlow): the workers race for the last
    # epochs as real ones do, at a fraction of the time (the minutes test below trains Keras).
    command = [sys.executable, "-m", "tuning", "sweep", *ARGS, "training.max_epochs=10", "budget.epochs=40"]
    command.append("training.simulate_epoch_seconds=0.05")
    done = subprocess.run([*command, "workers=2"], capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    epochs = trained()
    assert 36 <= sum(epochs) <= 40, epochs  # never over; under only by claims two workers raced for
    # Each worker prints the line as it ends; the last one, once every trial was told, is the study's.
    lines = re.findall(
        r"budget\.epochs=40 spent: (\d+) epochs over (\d+) trials \((\d) workers?\)", done.stdout
    )
    assert lines, out[-4000:]
    assert int(lines[-1][0]) == sum(epochs) and int(lines[-1][1]) == len(epochs)
    study = optuna.load_study(study_name="plants", storage=URL)
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    # A trial the budget ended (none when the workers' trials happened to fill it exactly).
    early = [t for t in study.trials if flat_attrs(t.user_attrs).get("stopped_by") == "budget.epochs"]
    assert all(t.state.name == "PRUNED" and flat_attrs(t.user_attrs)["epochs_trained"] < 10 for t in early)

    # The same command again: the study spent its budget, so nothing trains and it exits 0.
    assert cli(command[3:]) == 0  # in this process: a resume that trains nothing
    assert trained() == epochs
    # Five epochs more: they go on from what was spent, and the budget cuts the new trial short.
    assert cli([*command[3:], "budget.epochs=45"]) == 0
    assert sum(trained()) == 45 and len(trained()) == len(epochs) + 1
    last = optuna.load_study(study_name="plants", storage=URL).trials[-1]
    assert last.state.name == "PRUNED" and flat_attrs(last.user_attrs)["stopped_by"] == "budget.epochs"


@pytest.mark.slow
def test_budget_minutes_stops_by_training_time_and_survives_a_resume(in_tmp, capsys):
    # No epoch cap and no early stop: only the budget ends a trial, however fast the machine.
    args = ["sweep", *ARGS, "search_space.epochs=100000", "training.early_stopping.patience=null"]
    assert cli([*args, "budget.minutes=0.1"]) == 0
    text = "".join(capsys.readouterr())
    summary = load_summary(URL, "plants")
    used = spent(summary.trials)
    # Spent at an epoch end or before a trial: over by at most an epoch and a trial's start.
    assert 0.1 <= used.minutes <= 0.1 + 0.1, used
    assert f"budget.minutes=0.1 spent: {used.minutes:.2f} minutes over {used.trials} trial" in text
    assert any(t.user_attrs.get("stopped_by") == "budget.minutes" for t in summary.trials)

    # Resumed: the time already spent counts, so nothing runs; a larger budget goes on from it.
    assert cli([*args, "budget.minutes=0.1"]) == 0
    assert "nothing to run (raise the budget to search on)" in "".join(capsys.readouterr())
    assert len(load_summary(URL, "plants").trials) == len(summary.trials)
    # ... with study.n_trials set too: the budget ends it first, which is no short sweep (exit 0, not 3)
    assert cli([*args, "study.n_trials=50", "budget.minutes=0.15"]) == 0
    again = spent(load_summary(URL, "plants").trials)
    assert again.trials > used.trials and 0.15 <= again.minutes <= 0.15 + 0.1, again


def test_a_budget_is_refused_with_keras_tuner_in_one_line(in_tmp, capsys):
    assert cli(["sweep", *ARGS, "engine=keras_tuner", "budget.epochs=10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: budget.epochs: engine=keras_tuner cannot count a budget")
    assert "\n" not in err


def test_spent_reads_claims_resumed_trials_and_leaves_out_warm_start_copies():
    trials = [
        TrialSummary(0, "COMPLETE", 0.5, user_attrs={"epochs_trained": 10}, seconds=60.0, start_time=0.0),
        # interrupted after 4 epochs, then continued from its checkpoint by trial 2
        TrialSummary(
            1, "FAIL", None, intermediate_values=dict.fromkeys(range(4), 0.1), seconds=30.0, start_time=60.0
        ),
        TrialSummary(
            2,
            "RUNNING",
            None,
            user_attrs={"retry_of": 1, "resumed_epochs": 4, "budget_epochs": 7},
            intermediate_values=dict.fromkeys(range(6), 0.1),
            start_time=100.0,
        ),
        TrialSummary(
            3, "COMPLETE", 0.4, user_attrs={"epochs_trained": 10, "warm_start_trial": 3}, seconds=999.0
        ),
        TrialSummary(
            4,
            "PRUNED",
            None,
            user_attrs={"epochs_trained": 2, "stopped_by": "budget.epochs"},
            seconds=12.0,
            start_time=50.0,
        ),
        TrialSummary(5, "WAITING", None),
    ]
    used = spent(trials, now=160.0)
    # 10 + 4 + (7 claimed - 4 taken over) + 2; the copy (trial 3) and the queued trial spent nothing
    assert (used.epochs, used.trials, used.ended_early, used.workers) == (19, 4, 1, 2)
    assert used.minutes == pytest.approx((60 + 30 + 60 + 12) / 60)
    assert exhausted(BudgetConfig(epochs=19), used) == "budget.epochs"
    assert exhausted(BudgetConfig(epochs=19), used, claiming=True) is None  # its own claim may reach it
    assert exhausted(BudgetConfig(epochs=18), used, claiming=True) == "budget.epochs"
    assert exhausted(BudgetConfig(minutes=2.7), used) == "budget.minutes"
