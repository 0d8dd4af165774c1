"""The parent run shared by every worker on a study: one object finds or creates it, calls are
retried through an outage, the parent's state is read from the store, and who may close it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from tuning.files import file_lock
from tuning.study.summary import StudySummary
from tuning.tracking.client import store_lock
from tuning.tracking.content import ROLE_TAG, STUDY_TAG, TRACKING_ERRORS, TRIAL_TAG

log = logging.getLogger("tuning")
T = TypeVar("T")

# MLflow answers that no retry changes: the request itself is wrong, or already done.
PERMANENT = frozenset(
    {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE"}
)
ATTEMPTS = 4
FIRST_DELAY = 1.0  # seconds; doubled after each failed attempt (1 + 2 + 4 s in all)

ENDED_METRIC = "n_ended"  # the parent's count of ended trials: also the step of its counts


def retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again through a passing outage (the server restarting, a
    locked database); the last error is raised for the caller to report."""
    return Retrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=FIRST_DELAY),  # read at each call: tests shorten it
        retry=retry_if_exception(_passing),
        before_sleep=_log_retry,
        reraise=True,
    )(call, *args, **kwargs)


def _passing(err: BaseException) -> bool:
    """An MLflow failure that another try may not meet."""
    permanent = isinstance(err, MlflowException) and err.error_code in PERMANENT
    return isinstance(err, TRACKING_ERRORS) and not permanent


def _log_retry(state: RetryCallState) -> None:
    err = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.debug(f"MLflow: attempt {state.attempt_number} failed ({err}); retrying in {wait:.0f} s")


def ended(study: StudySummary) -> int:
    """Trials that have ended (complete, pruned or failed): only ever grows, so the parent's
    counts stepped by it show the newest reading of the study whichever worker logs last."""
    return sum(t.state in ("COMPLETE", "PRUNED", "FAIL") for t in study.trials)


def still_running(study: StudySummary) -> list[int]:
    """Trials another worker is training: while there are any, the parent run stays RUNNING.
    A trial a Ctrl-C stopped (``interrupted``; KerasTuner keeps it RUNNING for its re-run) is not."""
    return [t.number for t in study.trials if t.state == "RUNNING" and not t.user_attrs.get("interrupted")]


class ParentRun:
    """The study's MLflow parent run, one for every worker: the only code that finds or creates it.

    Find-then-create runs under one lock among the study's workers (``parent_lock``), so the
    first worker creates the run and every later one finds it. Where no lock reaches (a
    storage with none), workers that both created one keep the first made (``_own_or_first_parent``).
    """

    def __init__(self, client: Any, experiment_id: str, study_name: str) -> None:
        self.client, self.experiment_id = client, experiment_id
        self.where = f"tags.`{ROLE_TAG}` = 'sweep' and tags.`{STUDY_TAG}` = '{study_name}'"

    def open(self, tags: Mapping[str, str], lock: AbstractContextManager[Any]) -> tuple[Any, bool]:
        """The parent run (a found one set RUNNING again) and whether it was found (a resume)."""
        with lock:
            found = self.client.search_runs(
                [self.experiment_id], self.where, max_results=1, order_by=["attributes.start_time ASC"]
            )
            if found:
                self.client.update_run(found[0].info.run_id, status="RUNNING")
                return found[0], True
            created = self.client.create_run(self.experiment_id, run_name="sweep", tags=dict(tags))
        return _own_or_first_parent(self.client, self.experiment_id, self.where, created), False


def parent_lock(tracking_uri: str, storage_url: str, study: str) -> AbstractContextManager[Any]:
    """The lock the study's workers find or create its parent run under: the embedded MLflow
    store's lock file (its workers all share that file), else the study's own lock
    (``study_lock``: an advisory lock on PostgreSQL reaches every machine's workers)."""
    lock = store_lock(tracking_uri)
    if lock is not None:
        return file_lock(lock)
    from tuning.search.engines.optuna_storage import study_lock

    return study_lock(storage_url, study)


def _own_or_first_parent(client: Any, exp: str, where: str, created: Any) -> Any:
    """The study's parent run once this worker has made one: the first made wins.

    Workers that start a new study together each find no parent run and create one; each
    then looks again, and every worker but the first deletes its own and joins the first
    (earliest start time, then run id: the same answer in every worker).
    """
    parents = client.search_runs([exp], where, max_results=100)
    first = min(parents, key=lambda r: (r.info.start_time, r.info.run_id), default=created)
    if first.info.run_id != created.info.run_id:
        client.delete_run(created.info.run_id)
        log.info(f"MLflow: joining sweep run {first.info.run_id} that another worker started")
    return first


def _child_runs(client: Any, experiment: str, study_name: str) -> dict[int, str]:
    """Trial number -> run id of the study's fully logged child runs (resume).

    A trial's run that an outage cut short (left RUNNING) is left out, for the back-fill to
    complete; a trial's second run (a create retried after its answer was lost) is deleted."""
    found: dict[int, str] = {}
    for number, runs in retrying(trial_runs, client, experiment, study_name).items():
        run = retrying(one_run, client, runs)
        if run.info.status != "RUNNING":
            found[number] = run.info.run_id
    return found


def trial_runs(
    client: Any, experiment: str, study_name: str, number: int | None = None
) -> dict[int, list[Any]]:
    """The study's child runs in the store by trial number (``number``: that trial's only),
    recognised by their tags ``tuning.study``, ``tuning.role`` and ``tuning.trial``."""
    where = f"tags.`{ROLE_TAG}` = 'trial' and tags.`{STUDY_TAG}` = '{study_name}'"
    if number is not None:
        where += f" and tags.`{TRIAL_TAG}` = '{number}'"
    found: dict[int, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([experiment], where, max_results=1000, page_token=token)
        for run in page:
            tag = run.data.tags.get(TRIAL_TAG, "")
            if tag.isdigit():
                found.setdefault(int(tag), []).append(run)
        token = page.token
        if not token:
            return found


def one_run(client: Any, runs: list[Any]) -> Any:
    """One trial's run among ``runs``: a finished one before one an outage cut short, then the
    first made (the same choice in every worker); the others are deleted (MLflow keeps them in
    its trash, ``mlflow gc`` removes them for good)."""
    kept = min(runs, key=lambda r: (r.info.status == "RUNNING", r.info.start_time or 0, r.info.run_id))
    for run in runs:
        if run.info.run_id != kept.info.run_id:
            try:
                client.delete_run(run.info.run_id)
            except MlflowException as err:  # already removed for good (``mlflow gc``)
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            log.info(
                f"MLflow: deleted run {run.info.run_id}, a second run of trial {run.data.tags.get(TRIAL_TAG)}"
            )
    return kept
