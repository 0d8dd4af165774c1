"""An MLflow server that goes away in the middle of a sweep and comes back on the same port and
store: the sweep warns, goes on, and a resume leaves one child run per trial, the best mark on the
study's best trial alone, the sweep run FINISHED.

A real `mlflow server` (SQLite store), killed with SIGKILL to its process group the moment trial
0's child run is in its store (before its values: the outage cuts that trial's logging short),
started again once the sweep has said a trial was not logged. Nothing mocked.
"""

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
from conftest import free_port, start_mlflow_server, stop_process_group, wait_for_mlflow

ROLE_TRIAL = "tags.`tuning.role` = 'trial'"
SWEEP = ("data.n_samples=400", "training.max_epochs=2", "study.n_trials=3", "tracking.learning_curves=0")


def start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """`mlflow server` on ``port`` over ``folder``'s store, answering ``/health``."""
    proc = start_mlflow_server(folder, port, f"sqlite:///{folder / 'server.db'}")
    wait_for_mlflow(proc, port, folder, timeout=120)
    return proc


def sweep(folder: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", "tracking=mlflow", f"tracking.uri={url}", *SWEEP],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip


def kill_once_trial_0_has_a_run(folder: Path, server: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the server's process group as soon as its store holds trial 0's run."""
    store = sqlite3.connect(folder / "server.db", timeout=10)
    deadline = time.monotonic() + 30
    sql = "SELECT count(*) FROM runs WHERE name LIKE 'trial-0000%'"
    while not store.execute(sql).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.001)
    store.close()
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.mark.slow
def test_a_server_outage_mid_sweep_ends_with_one_run_per_trial_and_one_best_after_the_resume(tmp_path):
    from mlflow.tracking import MlflowClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    sweeps = [sweep(tmp_path, url)]
    try:
        lines = []
        for line in sweeps[0].stdout or ():
            lines.append(line)
            if "] trial 0 " in line and server.returncode is None:  # trial 0 ended: being logged
                kill_once_trial_0_has_a_run(tmp_path, server)
            elif "not fully logged" in line and server.poll() is not None:
                server = start_server(tmp_path, port)  # the same port and store, back again
        output = "".join(lines)
        assert sweeps[0].wait(timeout=120) == 0, output
        assert "MLflow: trial 0 not fully logged (tried 4 times)" in output, output
        assert server.poll() is None, output  # the server came back during the sweep

        # What an outage at another instant leaves: a second run of a trial (its create retried
        # after the answer was lost, cut before its values), and half a best mark (the name
        # without the tag: what a version that wrote them in two calls left, item 14 of issue 27).
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name("plants").experiment_id
        trials = {int(r.data.tags["tuning.trial"]): r for r in client.search_runs([exp], ROLE_TRIAL)}
        second = client.create_run(exp, tags=dict(trials[1].data.tags))  # its name too
        half = next(n for n, r in trials.items() if r.data.tags.get("tuning.best") != "true")
        client.set_tag(trials[half].info.run_id, "mlflow.runName", f"trial-{half:04d} ★ best")

        sweeps.append(sweep(tmp_path, url))  # the resume: nothing left to train
        resumed = sweeps[1].communicate(timeout=120)[0]
        assert sweeps[1].returncode == 0, resumed

        runs = client.search_runs([exp], ROLE_TRIAL, max_results=1000)
        study = optuna.load_study(
            study_name="plants", storage=f"sqlite:///{tmp_path}/experiments/plants/optuna.db"
        )
        numbers = sorted(int(r.data.tags["tuning.trial"]) for r in runs)
        assert numbers == [t.number for t in study.trials], output + resumed  # one run per trial
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}  # none RUNNING
        expected = {t.number: status[t.state.name] for t in study.trials}
        assert {int(r.data.tags["tuning.trial"]): r.info.status for r in runs} == expected, output + resumed
        (cut,) = [r for r in runs if r.data.tags["tuning.trial"] == "0"]  # logged in full, history too
        assert cut.info.run_id == trials[0].info.run_id and "while_training/loss" in cut.data.metrics
        best = [r for r in runs if r.data.tags.get("tuning.best") == "true"]
        named = [r for r in runs if r.info.run_name.endswith("★ best")]
        assert [r.data.tags["tuning.trial"] for r in best] == [str(study.best_trial.number)]
        assert [r.info.run_id for r in named] == [best[0].info.run_id]
        assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"
        (parent,) = client.search_runs([exp], "tags.`tuning.role` = 'sweep'")
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["tuning.best_trial"] == str(study.best_trial.number)
        assert parent.data.tags["tuning.best_trial_run_id"] == best[0].info.run_id
    finally:
        for proc in sweeps:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stop_process_group(server)
