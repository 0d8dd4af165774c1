"""The parent run shared by workers: MLflow calls retried through an outage, then reported;
answers that no retry changes raised at once. Real clients, nothing mocked."""

from __future__ import annotations

import socket
import time

import pytest
from mlflow.exceptions import MlflowException

from tuning.study.summary import StudySummary, TrialSummary
from tuning.tracking import shared
from tuning.tracking.client import connect


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


def test_a_server_that_stays_down_is_tried_again_then_reported(monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(shared, "FIRST_DELAY", 0.2)
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(MlflowException):
        shared.retrying(client.search_experiments, max_results=1)
    assert time.monotonic() - start >= 0.2 + 0.4 + 0.8  # three waits: four attempts


def test_an_answer_no_retry_changes_is_raised_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "FIRST_DELAY", 5.0)
    client = connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    start = time.monotonic()
    with pytest.raises(MlflowException) as err:
        shared.retrying(client.get_run, "0" * 32)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert time.monotonic() - start < 5.0


def test_the_parent_step_only_grows_and_running_trials_keep_it_open():
    def study(*states: str) -> StudySummary:
        trials = [
            TrialSummary(number=n, state=s, value=None, params={}, int_params=frozenset(), user_attrs={})
            for n, s in enumerate(states)
        ]
        return StudySummary(name="s", direction="minimize", user_attrs={}, trials=trials)

    # Trial 1 (started first) ends after trial 2: the step counts ended trials, not numbers.
    assert shared.ended(study("COMPLETE", "RUNNING", "PRUNED")) == 2
    assert shared.ended(study("COMPLETE", "FAIL", "PRUNED", "WAITING")) == 3
    assert shared.still_running(study("COMPLETE", "RUNNING", "PRUNED")) == [1]


def test_workers_opening_the_parent_together_under_its_lock_make_one(tmp_path):
    """Four workers (threads, each its own lock handle) find-or-create the parent at once: one
    creates it, the others find it; nothing is made and then deleted."""
    from concurrent.futures import ThreadPoolExecutor

    from tuning.tracking.client import experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = connect(uri)
    exp = experiment_id(client, "race")
    tags = {"tuning.role": "sweep", "tuning.study": "race"}

    def open_parent(_: int) -> tuple[str, bool]:
        run, found = shared.ParentRun(client, exp, "race").open(tags, shared.parent_lock(uri, "", "race"))
        return run.info.run_id, found

    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(open_parent, range(4)))
    assert len({run_id for run_id, _ in opened}) == 1
    assert sorted(found for _, found in opened) == [False, True, True, True]
    every = client.search_runs([exp], "", run_view_type=3)  # ViewType.ALL: deleted ones too
    assert [r.info.run_id for r in every] == [opened[0][0]]
    assert client.get_run(opened[0][0]).info.status == "RUNNING"
