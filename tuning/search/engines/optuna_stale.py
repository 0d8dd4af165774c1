"""Trials a stopped worker left behind: find them (dead process on this host, or no heartbeat),
fail them, and queue their parameters once more; and the heartbeat of this worker's own trial."""

from __future__ import annotations

import os
import socket
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tuning.study.summary import flat_attrs


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue again, once, the parameters of trials stopped by Ctrl-C; returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    queued = []
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            queued.append(t.number)
    return queued


DEFAULT_GRACE = 90.0  # seconds: study.grace_period's default, for storages without heartbeats
WORKER_ATTR = "worker"  # "<host>:<pid>" of the process running the trial
PIDNS_ATTR = "worker_pidns"  # its PID namespace: containers that share a host name do not share PIDs


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


CREATOR_ATTR = "creator"  # study user attribute: {"worker", "pidns"} of the process that made it


def mark_creator(study: optuna.Study) -> None:
    """Store this process as the study's creator (see ``creator_gone``)."""
    study.set_user_attr(CREATOR_ATTR, {"worker": worker_id(), "pidns": pid_namespace()})


def creator_gone(study: optuna.Study) -> bool:
    """True when the process that made ``study`` ran on this host and is gone: a worker that
    finds no trial in it is resuming that run, not joining a run in progress."""
    creator = study.user_attrs.get(CREATOR_ATTR)
    if not isinstance(creator, dict):
        return False
    return _dead_worker(creator.get("worker"), creator.get("pidns"))


def pid_namespace() -> int | None:
    try:
        return Path("/proc/self/ns/pid").stat().st_ino
    except OSError:  # not Linux
        return None


def _dead_worker(worker: Any, namespace: Any) -> bool:
    """True when ``worker`` ran on this host, in this PID namespace, and its process is gone."""
    host, _, pid = str(worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    if namespace != pid_namespace() or sys.platform == "win32":  # Windows' os.kill(pid, 0) would kill it
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_stale_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, grace: float = DEFAULT_GRACE
) -> list[int]:
    """Mark FAIL the trials a stopped worker left RUNNING; returns their numbers.

    Three signs that a worker stopped: its process is gone from this host (the trial's
    ``worker`` attribute: known at once, for every storage, journal files included); its
    heartbeat is older than ``grace_period`` (RDB storages; a worker on another machine); or
    the trial has no ``worker`` at all ``grace`` seconds after it started (a kill between
    Optuna's insert of the row and the worker's next write: nobody can own it any more). A
    trial failed by the first or third with parameters drawn is tagged ``interrupted`` and re-run
    once by ``requeue_interrupted`` when the study still needs trials; Optuna's retry callback
    re-queues those of the second. Every run calls this, including one that finds nothing left to
    train. ``storage``: the one the study was opened on.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in running:
        reason = _stale_reason(t, grace)
        if reason is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if t.params:
                storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    optuna.storages.fail_stale_trials(study)  # does nothing without heartbeats
    numbers = {t.number for t in running}
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in numbers)


def _stale_reason(trial: optuna.trial.FrozenTrial, grace: float) -> str | None:
    """Why ``trial`` (RUNNING) is known to be dead, or None: its worker's process is gone from
    this host, or no worker took it within ``grace`` seconds of its start."""
    attrs = flat_attrs(trial.user_attrs)
    worker = attrs.get(WORKER_ATTR)
    if worker is None:
        started = trial.datetime_start  # Optuna's local, naive time
        if started is None or (datetime.now() - started).total_seconds() <= grace:
            return None  # a live worker writes its attribute right after Optuna's insert
        return (
            f"no worker took the trial within {grace:g} s of its start "
            "(its process stopped right after creating it: killed or crashed)"
        )
    if _dead_worker(worker, attrs.get(PIDNS_ATTR)):
        return f"worker {worker} stopped while the trial ran (killed or crashed)"
    return None


class Heartbeat:
    """This worker's running trial, marked alive every ``heartbeat_interval`` seconds in a thread
    (RDB storages with heartbeats; others: nothing), as Optuna's ``optimize`` does for its trials:
    a worker that dies stops beating, and the next worker fails and re-queues its trial."""

    def __init__(self, storage: optuna.storages.BaseStorage, study: optuna.Study, number: int) -> None:
        self.storage = storage
        interval = (
            storage.get_heartbeat_interval() if isinstance(storage, optuna.storages.RDBStorage) else None
        )
        self.interval = interval
        self.trial_id = (
            storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(study.study_name), number
            )
            if interval
            else None
        )
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval and self.trial_id is not None:
            self.thread = threading.Thread(target=self._beat, daemon=True, name="tuning-heartbeat")
            self.thread.start()

    def _beat(self) -> None:
        assert isinstance(self.storage, optuna.storages.RDBStorage) and self.trial_id is not None
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stopped.wait(timeout=self.interval):
                return

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:  # a beat stuck on the store does not hold the sweep's stop:
            self.thread.join(timeout=5)  # the thread is a daemon and ends with the process
