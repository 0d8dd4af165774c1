"""Trials a stopped worker left behind: find them (dead process on this host, or no heartbeat),
fail them, and queue their parameters once more."""

from __future__ import annotations

import os
import socket
import sys
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
        return os.stat("/proc/self/ns/pid").st_ino
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


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the trials a stopped worker left RUNNING; returns their numbers.

    Two signs that a worker stopped: its process is gone from this host (the trial's
    ``worker`` attribute: known at once, for every storage, journal files included), or its
    heartbeat is older than ``grace_period`` (RDB storages; a worker on another machine). A
    trial failed by the first is tagged ``interrupted`` and re-run once by ``requeue_interrupted``
    when the study still needs trials; Optuna's retry callback re-queues those of the second.
    Every run calls this, including one that finds nothing left to train.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    storage = study._storage  # as optuna.storages.fail_stale_trials does
    for t in running:
        worker = t.user_attrs.get(WORKER_ATTR)
        if not _dead_worker(worker, t.user_attrs.get(PIDNS_ATTR)):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_user_attr(
                t._trial_id, "fail_reason", f"worker {worker} stopped while the trial ran (killed or crashed)"
            )
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    optuna.storages.fail_stale_trials(study)  # does nothing without heartbeats
    numbers = {t.number for t in running}
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in numbers)
