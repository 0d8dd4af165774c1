"""Faults with real processes: kill -9 and SIGTERM in the middle of a trial, a trial that ended
without its MLflow run. What is asserted is the stored state afterwards: trial states and counts,
the SQLite file's integrity, MLflow runs and statuses, best.yaml against the study."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY, signal_during_trial_1

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

# Long trials (40 epochs, no early stopping, no pruning) so that a signal lands inside trial 1.
LONG = [t for t in TINY if t != "tracking=none"] + [
    "training.max_epochs=40",
    "search_space.epochs=40",
    "training.early_stopping.patience=null",
    "pruner=none",
]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def load(folder: Path) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/experiments/plants/optuna.db")
    return optuna.load_study(study_name="plants", storage=storage)


def sweep(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def signal_in_trial_1(folder: Path, signum: int, *args: str) -> tuple[int, str]:
    """`tuning sweep` as a process, sent ``signum`` well inside trial 1's fit."""
    return signal_during_trial_1(folder, signum, *args, settle=1.5)


def mlflow_runs(folder: Path) -> tuple[object, dict[int, object]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/experiments/mlflow.db")
    exp = client.get_experiment_by_name("plants").experiment_id
    runs = client.search_runs([exp], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get("tuning.role") == "sweep"]
    children = {
        int(r.data.tags["tuning.trial"]): r for r in runs if r.data.tags.get("tuning.role") == "trial"
    }
    return parent, children


def integrity(folder: Path) -> str:
    with sqlite3.connect(folder / "experiments" / "plants" / "optuna.db") as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def best_yaml_matches(folder: Path, study: optuna.Study) -> None:
    best = yaml.safe_load((folder / "experiments" / "plants" / "best.yaml").read_text())
    assert best["best"]["trial"] == study.best_trial.number
    assert best["best"]["value"] == pytest.approx(study.best_value)
    for name in ("activation", "optimizer", "learning_rate", "batch_size"):
        assert best["search_space"][name] == study.best_trial.params[name]


def test_kill_9_mid_trial_then_a_run_with_nothing_left_to_do(tmp_path):
    code, output = signal_in_trial_1(tmp_path, signal.SIGKILL, *LONG, "study.n_trials=2")
    assert code == -signal.SIGKILL, output
    states = [t.state.name for t in load(tmp_path).trials]
    assert states == ["COMPLETE", "RUNNING"]  # what a killed worker leaves
    assert not (tmp_path / "experiments" / "plants" / "best.yaml").exists()

    # Nothing left to train (n_trials=1): the stale trial is failed all the same, the export
    # the killed run never reached is done, and the trial's MLflow run is back-filled.
    done = sweep(tmp_path, *LONG, "study.n_trials=1")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "were left running by a worker that stopped" in log and "nothing to run" in log
    study = load(tmp_path)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert "stopped while the trial ran" in trials[1].user_attrs["fail_reason"]
    assert integrity(tmp_path) == "ok"
    best_yaml_matches(tmp_path, study)
    parent, children = mlflow_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert (parent.data.metrics["n_complete"], parent.data.metrics["n_fail"]) == (1, 1)
    assert parent.data.metrics["objective"] == pytest.approx(study.best_value)
    assert children[1].info.status == "KILLED"
    assert children[1].data.tags["tuning.backfilled"] == "true"
    assert "stopped while the trial ran" in children[1].data.tags["tuning.fail_reason"]

    # With trials left, the killed trial's parameters are run again, once.
    done = sweep(tmp_path, *LONG, "study.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert trials[2].user_attrs.get("fail_reason") is None
    assert integrity(tmp_path) == "ok"


def test_sigterm_as_a_trial_starts_is_like_ctrl_c(tmp_path):
    """SIGTERM as soon as trial 1's seed is stored: before its first epoch (the model being
    built, TensorFlow tracing), where the signal can come back as another error or not at all."""
    code, output = signal_during_trial_1(tmp_path, signal.SIGTERM, *LONG, "study.n_trials=2", settle=0)
    assert code == 143, output
    assert "terminated (SIGTERM)" in output and "Traceback" not in output
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert trials[1].user_attrs["interrupted"] is True
    parent, children = mlflow_runs(tmp_path)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["tuning.run.1"].endswith("ended KILLED")
    assert children[1].info.status == "KILLED"
    assert integrity(tmp_path) == "ok"

    done = sweep(tmp_path, *LONG, "study.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    parent, children = mlflow_runs(tmp_path)
    assert parent.info.status == "FINISHED" and sorted(children) == [0, 1, 2]
    best_yaml_matches(tmp_path, load(tmp_path))


def test_trials_that_ended_without_a_child_run_are_back_filled(tmp_path):
    """A trial finished and stored, its MLflow run never written (here: tracking was off)."""
    assert sweep(tmp_path, *TINY, "study.n_trials=2").returncode == 0
    study = load(tmp_path)
    done = sweep(tmp_path, *[t for t in TINY if t != "tracking=none"], "study.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    parent, children = mlflow_runs(tmp_path)
    assert sorted(children) == [t.number for t in study.trials]
    for t in study.trials:
        run = children[t.number]
        assert run.data.tags["tuning.backfilled"] == "true"
        assert run.data.tags["tuning.state"] == t.state.name
        assert run.data.params["activation"] == t.params["activation"]
        if t.state.name == "COMPLETE":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["objective"] == pytest.approx(t.value)
            assert run.data.metrics["val_loss"] == pytest.approx(flat_attrs(t.user_attrs)["val_loss"])
    assert parent.data.metrics["best_objective"] == pytest.approx(study.best_value)
    assert parent.data.metrics["n_complete"] + parent.data.metrics["n_pruned"] == 2
    # A third run adds no second copy.
    assert sweep(tmp_path, *[t for t in TINY if t != "tracking=none"], "study.n_trials=2").returncode == 0
    assert sorted(mlflow_runs(tmp_path)[1]) == sorted(children)


def test_kill_9_right_after_the_study_row_is_written(tmp_path):
    """The study's identity is written just after its row: a kill in between is repaired by the
    next run, which stores the command's identity (logged as adopted) and runs as usual."""
    from conftest import settings

    from tuning.study.identity import study_identity

    db = tmp_path / "experiments" / "plants" / "optuna.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", *TINY, "study.n_trials=1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT count(*) FROM studies").fetchone()[0]:
                        break
            except sqlite3.Error:
                pass  # not made yet
            time.sleep(0.002)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert integrity(tmp_path) == "ok"
    done = sweep(tmp_path, *TINY, "study.n_trials=1")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path)
    assert study.user_attrs["identity"] == study_identity(settings("study.n_trials=1"))
    assert study.user_attrs["config"]["seed"] == 42
    assert [t.state.name for t in study.trials][-1] in ("COMPLETE", "PRUNED")
    assert integrity(tmp_path) == "ok"
