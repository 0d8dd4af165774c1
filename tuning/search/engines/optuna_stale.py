"""Trials a stopped worker left behind: find them (dead process on this host, or no heartbeat),
fail them, and queue their parameters once more; and the heartbeat of this worker's own trial."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState


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


WORKER_ATTR = "worker"  # "<host>:<pid>" of the process running the trial
PIDNS_ATTR = "worker_pidns"  # its PID namespace: containers that share a host name do not share PIDs


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark FAIL the trials a stopped worker left RUNNING; returns their numbers.

    Two signs that a worker stopped: its process is gone from this host (the trial's
    ``worker`` attribute: known at once, for every storage, journal files included), or its
    heartbeat is older than ``grace_period`` (RDB storages; a worker on another machine). A
    trial failed by the first is tagged ``interrupted`` and re-run once by ``requeue_interrupted``
    when the study still needs trials; Optuna's retry callback re-queues those of the second.
    Every run calls this, including one that finds nothing left to train. ``storage``: the one
    the study was opened on.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in running:
        worker = t.user_attrs.get(WORKER_ATTR)
        if not _dead_worker(worker, t.user_attrs.get(PIDNS_ATTR)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_user_attr(
                trial_id, "fail_reason", f"worker {worker} stopped while the trial ran (killed or crashed)"
            )
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    optuna.storages.fail_stale_trials(study)  # does nothing without heartbeats
    numbers = {t.number for t in running}
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in numbers)


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
