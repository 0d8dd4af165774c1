"""One trial lifecycle, every engine: the runner owns the loop, so a sweep, a failed trial, a stop
on repeated failures, a resume and a Ctrl-C mean the same whichever engine proposes the points.

Parametrised over the engines as Optuna's storage tests are over storages: each test runs real
sweeps on tiny data and reads the study back as engine-neutral records.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TINY, cli, read_summary, signal_during_trial_1

from tuning.study.summary import StudySummary

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class EngineCase:
    name: str
    study: str
    args: tuple[str, ...]

    def summary(self, folder: Path = Path()) -> StudySummary:
        """The study as records, read the way `tuning report` reads it."""
        return read_summary(folder / "experiments" / self.study, self.study, self.name)


ENGINES = [
    EngineCase("optuna", "plants", ("pruner=none",)),
    EngineCase("keras_tuner", "plants-keras_tuner", ("engine=keras_tuner", "engine.algorithm=random")),
]
# Every trial diverges: SGD with a learning rate of 1e12.
DIVERGING = ("search_space.learning_rate=1e12", "search_space.optimizer=sgd")


@pytest.fixture(params=ENGINES, ids=[e.name for e in ENGINES])
def engine(request) -> EngineCase:
    return request.param


def test_a_sweep_reaches_n_trials_with_complete_records(in_tmp, engine):
    assert cli(["sweep", *TINY, *engine.args, "study.n_trials=3"]) == 0
    study = engine.summary()
    assert [t.number for t in study.trials] == [0, 1, 2]
    for t in study.trials:
        assert t.state == "COMPLETE" and 0.0 < t.value < 2.0
        assert t.value == pytest.approx(t.user_attrs["val_log_loss"])
        assert t.user_attrs["seed"] == 42 + t.number and t.user_attrs["metric"] == "val_log_loss"
        assert t.seconds > 0 and t.start_time > 0
    assert Path(f"experiments/{engine.study}/best.yaml").is_file()


def test_a_trials_own_failure_is_its_fail_and_the_study_goes_on(in_tmp, engine, capsys):
    args = [*TINY, *engine.args, *DIVERGING, "study.n_trials=2", "study.max_consecutive_failures=0"]
    assert cli(["sweep", *args]) == 3  # fewer than n_trials finished
    trials = engine.summary().trials
    assert [t.state for t in trials] == ["FAIL", "FAIL"], "the first failure did not stop the study"
    assert all(t.value is None and "loss became NaN" in t.user_attrs["fail_reason"] for t in trials)
    assert "error: study.n_trials: 0 of 2 trials finished" in capsys.readouterr().err


def test_max_consecutive_failures_stops_the_sweep(in_tmp, engine, capsys):
    args = [*TINY, *engine.args, *DIVERGING, "study.n_trials=5", "study.max_consecutive_failures=2"]
    assert cli(["sweep", *args]) == 2
    assert [t.state for t in engine.summary().trials] == ["FAIL", "FAIL"]
    assert (
        "the sweep stopped: 2 trials in a row failed; last error: loss became NaN" in capsys.readouterr().err
    )
    assert not Path(f"experiments/{engine.study}/best.yaml").exists()


def test_resume_does_not_redo_finished_trials(in_tmp, engine):
    assert cli(["sweep", *TINY, *engine.args, "study.n_trials=2"]) == 0
    first = engine.summary().trials
    assert cli(["sweep", *TINY, *engine.args, "study.n_trials=2"]) == 0
    assert [(t.number, t.params, t.value) for t in engine.summary().trials] == [
        (t.number, t.params, t.value) for t in first
    ], "nothing left to run: nothing ran"
    assert cli(["sweep", *TINY, *engine.args, "study.n_trials=3"]) == 0
    more = engine.summary().trials
    assert [t.state for t in more] == ["COMPLETE"] * 3
    assert [(t.params, t.value) for t in more[:2]] == [(t.params, t.value) for t in first]


# Long trials (40 epochs, no early stopping, no pruning): the signal lands inside trial 1.
LONG = (
    "data.n_samples=400",
    "training.max_epochs=40",
    "search_space.epochs=40",
    "training.early_stopping.patience=null",
    "pruner=none",
    "study.n_trials=2",
)


def interrupt_trial_1(folder: Path, engine: EngineCase) -> tuple[int, str]:
    """`tuning sweep` as a process (MLflow tracking on, its store in ``folder``), sent SIGINT
    once trial 1 is training (its seed stored); returns the exit code and the output. The
    KerasTuner sweep gets it twice (a user pressing again): the same end, nothing skipped."""
    return signal_during_trial_1(
        folder,
        signal.SIGINT,
        *LONG,
        *engine.args,
        settle=1.5,
        trials=lambda: engine.summary(folder).trials,
        times=2 if engine.name == "keras_tuner" else 1,
    )


def mlflow_runs(folder: Path, study: str) -> tuple[object, dict[int, list[object]]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/experiments/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get("tuning.role") == "sweep"]
    children: dict[int, list[object]] = {}
    for r in runs:
        if r.data.tags.get("tuning.role") == "trial":
            children.setdefault(int(r.data.tags["tuning.trial"]), []).append(r)
    return parent, children


def test_ctrl_c_kills_the_parent_run_logs_the_trial_and_resume_reruns_it(tmp_path, engine):
    code, output = interrupt_trial_1(tmp_path, engine)
    assert code == 130, output
    assert "interrupted: the running trial" in output and "Traceback" not in output
    study = engine.summary(tmp_path)
    assert study.trials[0].state == "COMPLETE"
    [stopped] = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert stopped.number == 1
    parent, children = mlflow_runs(tmp_path, engine.study)
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in children[1]] == ["KILLED"], "the interrupted trial has its child run"
    assert children[1][0].data.tags["tuning.fail_reason"] == "interrupted"

    done = subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", *LONG, *engine.args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = engine.summary(tmp_path)
    assert resumed.finished_count() == 2
    rerun = [t for t in resumed.trials if t.state == "COMPLETE" and t.number != 0]
    assert len(rerun) == 1 and rerun[0].params == stopped.params, "the same point, trained again"
    assert resumed.trials[0].value == study.trials[0].value
    parent, _ = mlflow_runs(tmp_path, engine.study)
    assert parent.info.status == "FINISHED"


# No "Exception ignored ... Terminated" traceback either: pytest turns one into this warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_raise_is_swallowed_still_stops_the_sweep(in_tmp, engine, capsys):
    """SIGTERM landing in a gc callback (TensorFlow's _xla_gc_callback) raises nothing: Python
    prints "Exception ignored" and goes on. The sweep still stops at the next safe point."""
    before = signal.getsignal(signal.SIGTERM)
    fired = []

    def on_gc(phase, info):
        if not fired and phase == "start" and signal.getsignal(signal.SIGTERM) is not before:
            fired.append(True)  # the sweep's handler is installed: the raise lands in this callback
            os.kill(os.getpid(), signal.SIGTERM)

    gc.callbacks.append(on_gc)
    try:
        code = cli(["sweep", *TINY, *engine.args, "study.n_trials=30"])
    finally:
        gc.callbacks.remove(on_gc)
    assert fired
    assert code == 143, capsys.readouterr().err[-2000:]
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    study = engine.summary()
    assert [t.number for t in study.trials if t.state == "RUNNING"] == []
    assert study.finished_count() < 30
    assert all(t.user_attrs.get("interrupted") for t in study.trials if t.state == "FAIL")


def test_each_engine_names_what_it_supports():
    from tuning.search.engines import ENGINES as NAMES
    from tuning.search.engines import engine_class

    optuna, keras_tuner = engine_class("optuna"), engine_class("keras_tuner")
    assert set(NAMES) == {"optuna", "keras_tuner"}
    assert optuna.supports_workers and optuna.supports_pruning and "journal" in optuna.storages
    assert optuna.supports_constraints and optuna.supports_multi_objective
    assert not (keras_tuner.supports_workers or keras_tuner.supports_pruning)
    assert not (keras_tuner.supports_constraints or keras_tuner.supports_multi_objective)
    assert keras_tuner.storages == ("files",)
