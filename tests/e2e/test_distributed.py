"""A real distributed sweep on loopback: PostgreSQL (pgserver's bundled binaries), an `mlflow
server` whose backend store is that PostgreSQL, 3 worker processes started together as a
Kubernetes indexed Job starts them; then one worker SIGKILLed mid-trial and a new one finishing
the study. Nothing mocked. The servers must start: a test here fails (never skips) if one
cannot."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import TINY, free_port, start_mlflow_server, stop_process_group, wait_for_mlflow

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

STUDY = "dist"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    try:
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
        server.psql("CREATE DATABASE mlflow;")
    except Exception as err:  # CI must notice: a PostgreSQL test that cannot run is a failure
        pytest.fail(f"PostgreSQL (pgserver) did not start: {err!r}")
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_mlflow_server(folder, port, server.get_uri("mlflow"))
    try:
        url = wait_for_mlflow(proc, port, folder)
        yield SimpleNamespace(storage=server.get_uri(), tracking=url, folder=folder)
    finally:
        stop_process_group(proc)
        server.cleanup()
        atexit.unregister(server._cleanup)


def worker(cluster: SimpleNamespace, folder: Path, index: int, *extra: str) -> subprocess.Popen:
    """One worker as a cluster node runs it: the documented command, its index from the Job."""
    cmd = [
        *(sys.executable, "-m", "tuning", "sweep", *TINY, f"study.name={STUDY}", "training.threads=1"),
        *("pruner=none", f'study.storage="{cluster.storage}"'),
        *("tracking=mlflow", f"tracking.uri={cluster.tracking}", "tracking.learning_curves=0", *extra),
    ]
    env = {**os.environ, "JOB_COMPLETION_INDEX": str(index)}
    return subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def study_and_runs(cluster: SimpleNamespace) -> tuple[optuna.Study, object, dict[int, list]]:
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name=STUDY, storage=cluster.storage)
    client = MlflowClient(tracking_uri=cluster.tracking)
    exp = client.get_experiment_by_name(STUDY).experiment_id
    parents = client.search_runs([exp], "tags.`tuning.role` = 'sweep'")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    children: dict[int, list] = {}
    for run in client.search_runs([exp], "tags.`tuning.role` = 'trial'", max_results=1000):
        children.setdefault(int(run.data.tags["tuning.trial"]), []).append(run)
    return study, parents[0], children


def check_consistent(study: optuna.Study, parent, children: dict[int, list]) -> None:
    """Every trial one child run of the one parent; the parent describes the study, ended."""
    assert sorted(children) == [t.number for t in study.trials]
    assert all(len(runs) == 1 for runs in children.values()), {n: len(r) for n, r in children.items()}
    assert {r[0].data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert [t.number for t in study.trials if t.state.name == "RUNNING"] == []
    assert [n for n, r in children.items() if r[0].info.status == "RUNNING"] == []
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tuning.best_trial"] == str(study.best_trial.number)
    best = {k.removeprefix("best."): v for k, v in parent.data.tags.items() if k.startswith("best.")}
    assert best == {k: str(v) for k, v in study.best_trial.params.items()}
    assert parent.data.metrics["n_complete"] == sum(t.state.name == "COMPLETE" for t in study.trials)
    assert parent.data.metrics["n_ended"] == len(study.trials)
    assert parent.data.tags["tuning.best_trial_run_id"] == children[study.best_trial.number][0].info.run_id


def test_three_workers_on_postgres_and_an_mlflow_server_then_a_kill_and_a_resume(cluster, tmp_path):
    procs = [worker(cluster, tmp_path, k, "study.n_trials=5") for k in range(3)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-3000:] for o in outputs]
    study, parent, children = study_and_runs(cluster)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 5 <= len(finished) == len(study.trials) <= 7  # n_trials, + at most workers - 1
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)
    assert len({flat_attrs(t.user_attrs)["sampler_seed"] for t in study.trials}) == len(
        {flat_attrs(t.user_attrs)["worker"] for t in study.trials}
    )
    check_consistent(study, parent, children)

    # A worker SIGKILLed while it trains (no clean-up at all), then a new one finishes the study.
    n = len(finished) + 1
    heartbeat = ("study.heartbeat_interval=1", "study.grace_period=2")
    victim = worker(cluster, tmp_path, 0, f"study.n_trials={n}", *heartbeat)
    storage = optuna.storages.RDBStorage(cluster.storage)
    study_id = storage.get_study_id_from_name(STUDY)
    deadline, killed = time.monotonic() + 300, None
    while killed is None and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        trials = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        killed = next(
            (t for t in trials if "seed" in flat_attrs(t.user_attrs)), None
        )  # its training has begun
    if victim.poll() is None:
        os.killpg(victim.pid, signal.SIGKILL)
    output = victim.communicate(timeout=60)[0]
    assert killed is not None, output[-3000:]
    assert storage.get_trial(killed._trial_id).state.name == "RUNNING"  # left behind by the dead worker
    rescuer = worker(cluster, tmp_path, 1, f"study.n_trials={n}", *heartbeat)
    output = rescuer.communicate(timeout=900)[0]
    assert rescuer.returncode == 0, output[-3000:]
    assert f"trial(s) [{killed.number}] were left running by a worker that stopped" in output
    study, parent, children = study_and_runs(cluster)
    assert study.trials[killed.number].state.name == "FAIL"
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert children[killed.number][0].info.status in ("FAILED", "KILLED")
    check_consistent(study, parent, children)
