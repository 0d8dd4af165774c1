"""Ctrl-C and SIGTERM wait for a store write to end (tuning.interrupts): real signals, a real store."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
import sqlalchemy
from conftest import TINY, cli

from tuning import interrupts
from tuning.errors import Terminated


def kill_self(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # Python runs the handler at the next instruction; be sure it has


def test_a_signal_inside_a_shielded_write_is_raised_when_the_write_ends():
    done = []
    with interrupts.handled(), pytest.raises(Terminated):
        with interrupts.shielded():
            kill_self()
            done.append("the rest of the write")
        done.append("after the write")  # not reached: the held SIGTERM is raised first
    assert done == ["the rest of the write"]


def test_ctrl_c_is_held_too_and_a_second_signal_is_raised_at_once():
    done = []
    with interrupts.handled(), pytest.raises(KeyboardInterrupt) as err, interrupts.shielded():
        kill_self(signal.SIGINT)
        done.append("held")
        kill_self(signal.SIGTERM)  # pressed again: the write is abandoned
        done.append("not reached")
    assert done == ["held"]
    assert type(err.value) is Terminated


def test_a_held_signal_can_wait_for_an_explicit_release():
    with interrupts.handled():
        with interrupts.shielded(release_at_exit=False):
            kill_self()
        with pytest.raises(Terminated):
            interrupts.release()
        interrupts.release()  # nothing held any more


def test_a_signal_the_process_ignores_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.handled(), interrupts.shielded():
            kill_self(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)


def test_nothing_held_outlives_the_command():
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.handled(), interrupts.shielded(release_at_exit=False):
        kill_self()
    interrupts.release()  # the command ended: no stale signal stops the next one
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_inside_a_sqlite_commit_leaves_the_study_writable_for_every_worker(tmp_path):
    """The fault seen with two workers: SIGTERM inside Optuna's commit left the transaction open,
    so SQLite stayed locked and the other worker's next write failed as a lost store
    (StorageInternalError) after the lock timeout. Shielded, the commit ends, then the signal."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    fired = []

    def on_commit(conn):
        if not fired:
            fired.append(True)
            kill_self()

    sqlalchemy.event.listen(storage.engine, "commit", on_commit)
    with interrupts.handled(), pytest.raises(Terminated), interrupts.shielded():
        trial.report(0.5, step=0)
    assert fired
    other_worker = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 1}})
    other = optuna.load_study(study_name="s", storage=other_worker)
    other.tell(other.ask(), 1.0)  # without the shield: "database is locked" after the timeout
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert [(t.state.name, t.intermediate_values) for t in other.get_trials()] == [
        ("FAIL", {0: 0.5}),
        ("COMPLETE", {}),
    ]


def test_ctrl_c_while_the_sweep_run_is_closed_leaves_it_killed(in_tmp, monkeypatch, capsys):
    """Ctrl-C in the sweep's last write (its MLflow run closed, artifacts attached): the write
    ends whole, then the run is marked KILLED like every stopped sweep, and the exit is 130."""
    from mlflow import MlflowClient

    from tuning.tracking.sweep import MlflowSweepTracker

    attach = MlflowSweepTracker._log_artifacts

    def attach_then_ctrl_c(self, *args, **kwargs):
        kill_self(signal.SIGINT)  # held: the artifacts are still attached
        return attach(self, *args, **kwargs)

    monkeypatch.setattr(MlflowSweepTracker, "_log_artifacts", attach_then_ctrl_c)
    assert cli(["sweep", *TINY, "tracking=mlflow", "study.n_trials=1"]) == 130
    assert "interrupted: every finished trial is stored" in capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{in_tmp}/experiments/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("plants").experiment_id])
    [parent] = [r for r in found if r.data.tags.get("tuning.role") == "sweep"]
    assert parent.info.status == "KILLED"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)], "artifacts attached whole"
    assert [r.info.status for r in found if r.data.tags.get("tuning.role") == "trial"] == ["FINISHED"]
    assert (in_tmp / "experiments" / "plants" / "best.yaml").is_file()


@pytest.mark.parametrize("engine", ["optuna", "keras_tuner"])
def test_ctrl_c_while_a_trial_is_asked_for_leaves_it_interrupted_with_its_child_run(
    in_tmp, monkeypatch, capsys, engine
):
    """Ctrl-C inside the engine's ask (the trial's row being written): the row is written whole,
    then the trial, which never trained, is told FAIL as interrupted and gets its KILLED child
    run, so the study and MLflow count the same trials."""
    from mlflow import MlflowClient

    from tuning.search.engines import engine_class

    cls = engine_class(engine)
    ask, asked = cls.ask, []

    def ask_with_ctrl_c(self):
        asked.append(True)
        if len(asked) == 2:
            kill_self(signal.SIGINT)  # held until the proposal exists
        return ask(self)

    monkeypatch.setattr(cls, "ask", ask_with_ctrl_c)
    args = ["engine=keras_tuner", "engine.algorithm=random"] if engine == "keras_tuner" else []
    assert cli(["sweep", *TINY, *args, "tracking=mlflow", "study.n_trials=3"]) == 130
    assert "interrupted: the running trial is marked FAIL" in capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{in_tmp}/experiments/mlflow.db")
    name = "plants" if engine == "optuna" else "plants-keras_tuner"
    found = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    children = {
        int(r.data.tags["tuning.trial"]): r.info.status
        for r in found
        if r.data.tags.get("tuning.role") == "trial"
    }
    assert children == {0: "FINISHED", 1: "KILLED"}
    [parent] = [r for r in found if r.data.tags.get("tuning.role") == "sweep"]
    assert parent.info.status == "KILLED"
