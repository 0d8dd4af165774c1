"""The sweep's MLflow observer: one parent run per study, one child run per trial, values in batches.

Layout in the store: an experiment named after the study (or ``tracking.experiment``, which
several studies may share); in it a parent run (tags
``tuning.study=<name>``, ``tuning.role=sweep``) found again when the study resumes; under it a
child run ``trial-0007`` per finished trial (tag ``mlflow.parentRunId``), written once the trial
has ended, with its real start and end times.

Run status: COMPLETE and PRUNED trials end FINISHED (the tag ``tuning.state`` tells them apart:
pruning is a normal outcome of a search, not an error), FAIL ends FAILED, a trial stopped by
Ctrl-C ends KILLED. The parent ends FINISHED, KILLED on Ctrl-C, FAILED when the sweep stops on
an error, and is set RUNNING again when the study resumes. Workers share it: the last one to end
closes it (``tracking.shared``), and its counts and best come from the study, not one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from tuning.payload import Payload
from tuning.redaction import first_line, redact
from tuning.search.rehearsal import REHEARSAL_TAG
from tuning.study.selection import trial_marks
from tuning.study.summary import WARM_ATTR, StudySummary, TrialSummary, state_counts
from tuning.tracking.client import (
    Tracking,
    artifact_location,
    experiment_id,
    experiment_name,
    is_server,
    ui_command,
)
from tuning.tracking.content import (
    BEST_PREFIX,
    BEST_TAG,
    MAX_TAG_TEXT,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    RUN_PREFIX,
    STATE_TAG,
    STATUS,
    STOP_TAG,
    STUDY_TAG,
    TRACKING_ERRORS,
    TRIAL_TAG,
    batches,
    best_line,
    best_values,
    experiment_description,
    invocation_text,
    next_invocation,
    parent_params,
    parent_tags,
    run_status,
    selection_tags,
    stored_trial_metrics,
    trial_fixed_params,
    trial_metrics,
    trial_run_name,
    trial_tags,
    with_best,
)
from tuning.tracking.shared import (
    ATTEMPTS,
    ENDED_METRIC,
    ParentRun,
    _child_runs,
    ended,
    one_run,
    parent_lock,
    retrying,
    still_running,
    trial_runs,
)
from tuning.tracking.sweep_artifacts import log_sweep_artifacts

if TYPE_CHECKING:
    from tuning.config import Settings
    from tuning.config.schema import TrainingConfig
    from tuning.study.record import TrialRecord

log = logging.getLogger("tuning")
NAME_TAG = "mlflow.runName"
# While its reading's best trial holds, a worker rewrites the parent's counts at most this often:
# every worker writing the one parent run after each trial is two calls a trial on the tracking
# store, and rows that hundreds of workers would all update (experiments/benchmarks/bookkeeping.py).
# A new best, and the end of the command, are written at once.
PROGRESS_SECONDS = 10.0
WARM_TAG = "tuning.warm_start"  # on a child run: the warm start (its source) that gave the trial


def start_sweep_tracking(
    tracking: Tracking | None,
    settings: Settings,
    study: StudySummary,
    storage_url: str,
) -> MlflowSweepTracker | None:
    """The study's parent run, created or reopened (RUNNING); None when tracking is off."""
    if tracking is None:
        return None
    return MlflowSweepTracker.start(tracking, settings, study, storage_url)


class MlflowSweepTracker:
    """A TrialObserver: logs each finished trial as a child run and keeps the parent's best current."""

    def __init__(
        self,
        tracking: Tracking,
        settings: Settings,
        study_name: str,
        experiment: str,
        run_id: str,
        *,
        children: dict[int, str],
        best_tags: set[str],
    ) -> None:
        self.client = tracking.client
        self.uri = tracking.uri
        self.settings = settings
        self.study_name = study_name
        self.experiment_id = experiment
        self.run_id = run_id
        self.children = children  # trial number -> its fully logged child run
        self.unlogged: dict[int, TrialRecord] = {}  # this command's trials an outage kept out
        self.best_tags = best_tags
        self.fixed_params: dict[str, Any] = {}
        self.invocation = f"{RUN_PREFIX}1"  # this command's entry on the parent
        self.invocation_start = ""
        self.trials_before = 0
        self.warm: dict[int, str] = {}  # trial number -> warm_start.from that gave it
        # The experiment's own description (None: a shared experiment, which describes no one
        # study) and the best line last written on it: rewritten only when the best changes.
        self.experiment_note: str | None = None
        self.noted_best = ""
        # The trial this command last marked best in the store: while the study's best stays
        # that trial, the mark needs no search of the experiment's runs (two per trial before).
        self.marked: int | None = None
        # The best trial and monotonic time of this command's last parent update.
        self.progressed: tuple[int | None, float] | None = None

    @classmethod
    def start(
        cls,
        tracking: Tracking,
        settings: Settings,
        study: StudySummary,
        storage_url: str,
    ) -> MlflowSweepTracker:
        client, name = tracking.client, study.name
        experiment = experiment_name(settings.tracking, name)
        exp = experiment_id(client, experiment, artifact_location(tracking.uri))
        tags = {**parent_tags(settings, study, storage_url), **rehearsal_tag(settings.training)}
        params = parent_params(settings.study.metric, study)
        parent = ParentRun(client, exp, name)
        run, resumed = parent.open(tags, parent_lock(tracking.uri, storage_url, name))
        if resumed:
            params = {k: v for k, v in params.items() if k not in run.data.params}  # params never change
            # What the study was made with stays; this command is recorded as its own entry below.
            tags = {k: v for k, v in tags.items() if k not in run.data.tags}
            log.info(f"MLflow: resuming sweep run {run.info.run_id} in experiment '{experiment}'")
        best_tags = {k for k in run.data.tags if k.startswith(BEST_PREFIX)}
        tracker = cls(
            tracking,
            settings,
            name,
            exp,
            run.info.run_id,
            children=_child_runs(client, exp, name),
            best_tags=best_tags,
        )
        tracker.fixed_params = trial_fixed_params(settings.training, settings.study.metric, study)
        tracker.invocation_start = invocation_text(settings, study, started=time.time())
        tracker.trials_before = len(study.trials)
        tracker._log(run.info.run_id, params=params, tags=tags)
        # The experiments list and the experiment's page say what the study is (a shared
        # experiment holds several studies: each parent run says what its own is).
        if experiment == name:
            # Through the retry: workers starting together on a server backed by PostgreSQL may
            # both insert this new tag, and one gets a unique-key error; its retry updates it.
            # The search space as the config wrote it (the parsed one has `auto` resolved).
            space = settings.raw["search_space"]
            tracker.experiment_note = experiment_description(space, settings.study.metric, study)
            line = tracker._best_line(study)  # a resumed study's best leads it at once
            tracker.noted_best = line
            note = with_best(tracker.experiment_note, line) if line else tracker.experiment_note
            retrying(client.set_experiment_tag, exp, NOTE_TAG, note)
        tracker._claim_invocation()
        return tracker

    def _claim_invocation(self) -> None:
        """This command's own ``tuning.run.<k>``: workers starting together may pick the same k;
        whoever reads back another's text takes the next one."""
        for _ in range(10):
            self.invocation = next_invocation(self.client.get_run(self.run_id).data.tags)
            try:
                self.client.set_tag(self.run_id, self.invocation, self.invocation_start)
            except MlflowException as err:
                # Two workers writing the same new tag at once: a tracking server on PostgreSQL
                # answers the loser with its unique-key violation. The other took this k: next one.
                if "unique" not in str(err).lower() and "duplicate" not in str(err).lower():
                    raise
                continue
            time.sleep(0.05)
            if self.client.get_run(self.run_id).data.tags.get(self.invocation) == self.invocation_start:
                return

    # --- TrialObserver -------------------------------------------------------------------

    def on_trial_end(self, study: StudySummary, record: TrialRecord) -> None:
        """Log the trial as a child run (then those an earlier outage kept out), then refresh the
        parent's best. Never stops the sweep."""
        self._note_warm(study)
        self.unlogged[record.number] = record
        if not self._log_unlogged(first=record.number):
            return
        try:
            self._tag_selection(study, [record.number])
            if self._progress_due(study):
                self._log_progress(study)
        except TRACKING_ERRORS as err:
            _not_logged(record.number, err)

    def _progress_due(self, study: StudySummary) -> bool:
        """The parent shows this command nothing yet, another best, or counts older than
        ``PROGRESS_SECONDS``."""
        if self.progressed is None:
            return True
        best = study.best()
        number, at = self.progressed
        return (best.number if best else None) != number or time.monotonic() - at >= PROGRESS_SECONDS

    def _log_unlogged(self, first: int | None = None) -> bool:
        """Child runs for this command's trials not yet logged (``first`` first); False when the
        store still fails. Any error but a store's is a bug of ours and stops the sweep."""
        for number in sorted(self.unlogged, key=lambda n: n != first):
            try:
                # A trial tried before may have a run in the store already: looked for first.
                self.children[number] = self._log_trial(self.unlogged[number], look=number != first)
            except TRACKING_ERRORS as err:
                _not_logged(number, err)
                return False
            del self.unlogged[number]
        return True

    def backfill(self, study: StudySummary, space: Any) -> list[int]:
        """Child runs for ended trials that have none (the sweep stopped before logging them, or
        tracking was off); then the parent's counts and best. Returns the trial numbers."""
        from tuning.study.record import TrialRecord

        self._note_warm(study)
        done = []
        for t in study.trials:
            if t.state not in ("COMPLETE", "PRUNED", "FAIL") or t.number in self.children:
                continue
            try:
                hp = space.replay(t.params)
            except (ValueError, KeyError):  # a trial that failed before its parameters were sampled
                continue
            start = t.start_time if t.start_time is not None else time.time()
            record = TrialRecord(
                t.number, t.state, hp, int(t.user_attrs.get("seed", 0)), value=t.value, start_time=start
            )
            record.seconds = t.seconds or 0.0
            reason = t.user_attrs.get("fail_reason")
            record.error = "interrupted" if t.user_attrs.get("interrupted") else reason
            record.history = {}
            self.unlogged.pop(t.number, None)
            self.children[t.number] = self._log_trial(record, backfilled=t)
            done.append(t.number)
        if done:
            log.info(f"MLflow: logged trial(s) {done} that ended without a child run")
        self._log_progress(study)
        return done

    def _log_trial(
        self, record: TrialRecord, backfilled: TrialSummary | None = None, *, look: bool = True
    ) -> str:
        start_ms = int(record.start_time * 1000)
        end_ms = int((record.start_time + record.seconds) * 1000)
        tags = {
            **trial_tags(self.study_name, record),
            PARENT_TAG: self.run_id,
            **rehearsal_tag(self.settings.training),
        }
        if record.number in self.warm:
            tags[WARM_TAG] = self.warm[record.number][:MAX_TAG_TEXT]
        if record.state == "FAIL" and record.error == "interrupted" and backfilled is not None:
            reason = backfilled.user_attrs.get("fail_reason")
            if reason:
                tags["tuning.fail_reason"] = (redact(reason) or "")[:MAX_TAG_TEXT]
        if backfilled is None:
            metrics = trial_metrics(record, end_ms)
        else:  # from the study: its stored values, the objective per epoch
            tags["tuning.backfilled"] = "true"
            metrics = stored_trial_metrics(backfilled, end_ms)
        name = trial_run_name(record.number, "KILLED" if run_status(record) == "KILLED" else record.state)
        run_id = self._trial_run(record.number, start_ms, name, tags, look=look)
        params = {**record.hyperparameters.as_params(), "seed": record.seed, **self.fixed_params}
        self._log(run_id, metrics=metrics, params=params)
        retrying(self.client.set_terminated, run_id, status=run_status(record), end_time=end_ms)
        return str(run_id)

    def _note_warm(self, study: StudySummary) -> None:
        """Which trials a warm start gave (copied in, or queued first), for their runs' tag."""
        self.warm = {
            t.number: str(t.user_attrs[WARM_ATTR]) for t in study.trials if WARM_ATTR in t.user_attrs
        }

    def _trial_run(self, number: int, start_ms: int, name: str, tags: dict[str, str], *, look: bool) -> str:
        """The trial's child run: the one already in the store, found by its tags, else a new one.

        One is there when an earlier try made it but its answer was lost, or an outage cut its
        logging short (``look`` false: a trial's first try, which creates at once). Its name and
        tags are written again, its best mark taken off for ``_mark_best`` to set."""
        tries = 0

        def find_or_create() -> str:
            nonlocal tries
            tries += 1
            if look or tries > 1:
                runs = trial_runs(self.client, self.experiment_id, self.study_name, number).get(number)
                if runs:
                    run_id = str(one_run(self.client, runs).info.run_id)
                    again = {**tags, NAME_TAG: name, BEST_TAG: "false"}
                    self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in again.items()])
                    return run_id
            run = self.client.create_run(self.experiment_id, start_time=start_ms, run_name=name, tags=tags)
            return str(run.info.run_id)

        return retrying(find_or_create)

    def _log_progress(self, study: StudySummary) -> None:
        """Parent: the study's best (``objective`` and ``best_objective``), counts, best params.

        ``study`` is read from the store when the trial ended; the step is the number of ended
        trials in that reading, which only grows, so the parent's latest values are the newest
        reading whichever worker logs last (a trial number as step went stale when trials ended
        out of order). A worker whose reading is older than the parent's skips the best tags a
        newer one wrote, and a parent another worker closed is set RUNNING again.
        """
        trials = study.trials
        self.progressed = None  # until this update is stored: an outage leaves the next one due
        now, step = _now_ms(), ended(study)
        parent = retrying(self.client.get_run, self.run_id)
        newer = parent.data.metrics.get(ENDED_METRIC, -1) > step
        if parent.info.status != "RUNNING" and still_running(study):
            retrying(self.client.update_run, self.run_id, status="RUNNING")
        counts = state_counts(t.state for t in trials)
        values: dict[str, float] = {f"n_{state.lower()}": counts.get(state, 0) for state in STATUS}
        values[ENDED_METRIC] = step
        tags: dict[str, str] = {}
        best = study.best()
        if best is not None and best.value is not None:
            values.update(best_values(best))  # the parent reads as the study's result
            values.update(
                objective=float(best.value), best_objective=float(best.value), best_trial=best.number
            )
            tags = {f"{BEST_PREFIX}{k}": str(v) for k, v in best.params.items()}
            tags["tuning.best_trial"] = str(best.number)
            if best.number in self.children:
                run_id = tags["tuning.best_trial_run_id"] = self.children[best.number]
                # Marked by this command, and no other worker has named another best since.
                kept = (
                    best.number == self.marked and parent.data.tags.get("tuning.best_trial_run_id") == run_id
                )
                if not newer and not kept:
                    self._mark_best(best.number)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        if newer:  # the parent already shows a later state of the study than this reading
            self._log(self.run_id, metrics=metrics)
            self.progressed = (best.number if best else None, time.monotonic())
            return
        self._describe_best(study, parent, tags)
        self._log(self.run_id, metrics=metrics, tags=tags)
        stored = {k for k in parent.data.tags if k.startswith(BEST_PREFIX)}
        for stale in sorted(
            (self.best_tags | stored) - set(tags)
        ):  # e.g. units_2 when the new best has 2 layers
            try:
                self.client.delete_tag(self.run_id, stale)
            except MlflowException as err:  # another worker on the study deleted it first: gone either way
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        self.best_tags = {k for k in tags if k.startswith(BEST_PREFIX)}
        self.progressed = (best.number if best else None, time.monotonic())

    def _best_line(self, study: StudySummary) -> str:
        """The best trial's Markdown line, linked to its child run; "" before one is logged."""
        best = study.best()
        if best is None or best.value is None or best.number not in self.children:
            return ""
        return best_line(best, study.metric, self.children[best.number], self.experiment_id)

    def _describe_best(self, study: StudySummary, parent: Any, tags: dict[str, str]) -> None:
        """Lead the sweep run's description (into ``tags``) and the experiment's with the best
        trial's line, each written only when that line changed: at most once per trial."""
        line = self._best_line(study)
        if not line:
            return
        note = with_best(parent.data.tags.get(NOTE_TAG, ""), line)
        if note != parent.data.tags.get(NOTE_TAG):
            tags[NOTE_TAG] = note
        if self.experiment_note is not None and line != self.noted_best:
            note = with_best(self.experiment_note, line)
            retrying(self.client.set_experiment_tag, self.experiment_id, NOTE_TAG, note)
            self.noted_best = line

    def _tag_selection(self, study: StudySummary, numbers: list[int] | None = None) -> None:
        """Child runs' feasible flag and Pareto rank (``numbers``: those trials; None: all, as
        ranks move while trials arrive)."""
        marks = trial_marks(study)
        for number, run_id in self.children.items():
            if (numbers is None or number in numbers) and marks.get(number):
                self._log(run_id, tags=selection_tags(marks[number]))

    def _mark_best(self, number: int) -> None:
        """Name the best trial's run ``trial-0007 ★ best`` (tag ``tuning.best=true``) and give the
        previous best its plain name back, so the runs table shows the winner at a glance.

        The marked runs are looked up in the store, not remembered: another worker may have
        moved the mark since. A run's name and tag are written in one call, the old mark taken
        off before the new one is set: an outage between them leaves no run marked, never two,
        and the next trial's end (or the next run) finds any half-marked run and sets it right.

        Not called again, with its two searches of the experiment's runs, while the best stays
        the trial this command marked last (``self.marked``, set once the mark is stored) and
        the parent still names its run: a worker that moves the mark names its own best run on
        the parent in the same step, and this command's next parent update sees it and looks
        again."""
        run_id = self.children[number]
        best = trial_run_name(number, best=True)
        marked = self._marked_runs()
        if [r.info.run_id for r in marked] != [run_id] or not _marked(marked[0], best):
            for run in marked:
                if run.info.run_id != run_id:
                    self._log(run.info.run_id, tags={NAME_TAG: _plain_name(run), BEST_TAG: "false"})
            self._log(run_id, tags={NAME_TAG: best, BEST_TAG: "true"})
        self.marked = number

    def _marked_runs(self) -> list[Any]:
        """The study's runs that carry the best mark, by tag or by name (half of a mark that an
        earlier version wrote in two calls)."""
        study = f"tags.`{STUDY_TAG}` = '{self.study_name}' and tags.`{ROLE_TAG}` = 'trial'"
        found: dict[str, Any] = {}
        for mark in (f"tags.`{BEST_TAG}` = 'true'", "attributes.run_name LIKE '% best'"):
            where = f"{mark} and {study}"
            for run in retrying(self.client.search_runs, [self.experiment_id], where, max_results=100):
                found[run.info.run_id] = run
        return list(found.values())

    # --- end of the sweep ----------------------------------------------------------------

    def finish(
        self,
        study: StudySummary,
        status: str = "FINISHED",
        plots: Callable[[Path, str], list[Path]] | None = None,
    ) -> None:
        """End the parent run (FINISHED, KILLED or FAILED), then attach the sweep's artifacts
        (``plots``: the engine's own plots of the study, drawn into a folder)."""
        self._log_unlogged()
        try:
            self._log_progress(study)
            self._tag_selection(study)
            ran = state_counts(t.state for t in study.trials[self.trials_before :])
            summary = ", ".join(f"{n} {s}" for s, n in ran.items()) or "none"
            self._log(
                self.run_id,
                tags={self.invocation: f"{self.invocation_start}; trials: {summary}; ended {status}"},
            )
            others = still_running(study)
            if others:  # the last worker to end closes it (`study` is read after this one's trials)
                log.info(f"MLflow: sweep run stays RUNNING: trial(s) {others} still running in other workers")
            else:
                retrying(self.client.set_terminated, self.run_id, status=status)
            self._log_artifacts(study, plots)
        except TRACKING_ERRORS as err:  # never hide the sweep's own outcome (or its Ctrl-C) behind this
            log.warning(f"MLflow: sweep run not fully closed: {_one_line(err)}")

    def killed(self, study: StudySummary) -> None:
        """A Ctrl-C / SIGTERM came while the sweep ended: its run says KILLED, as any stop does
        (unless trials still run in other workers: the last of them closes it)."""
        if not still_running(study):
            try:
                retrying(self.client.set_terminated, self.run_id, status="KILLED")
            except TRACKING_ERRORS as err:
                log.warning(f"MLflow: sweep run not marked KILLED: {_one_line(err)}")

    def stopped(self, line: str) -> None:
        """The sweep stopped itself (``stop=converged``): its line as the run's tag ``tuning.stop``.
        A store that refuses it costs a warning, not the sweep (the study keeps the line)."""
        try:
            retrying(self.client.set_tag, self.run_id, STOP_TAG, line)
        except TRACKING_ERRORS as err:
            log.warning(f"MLflow: sweep run not tagged {STOP_TAG}: {_one_line(err)}")

    def ui_hint(self) -> str:
        """Where to look at the runs: the command that opens the UI, or the server's page."""
        if is_server(self.uri):
            page = f"{(redact(self.uri) or '').rstrip('/')}/#/experiments/{self.experiment_id}/runs"
            return f"MLflow runs of study '{self.study_name}': open {page}"
        return (
            f"MLflow runs of study '{self.study_name}': {ui_command(self.uri)} "
            f"(then open http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs)"
        )

    def _log_artifacts(self, study: StudySummary, plots: Callable[[Path, str], list[Path]] | None) -> None:
        log_sweep_artifacts(
            self.client,
            self.run_id,
            study,
            self.settings.raw,
            tracking=self.settings.tracking,
            children=self.children,
            plots=plots,
        )

    def _log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Payload | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Everything in as few ``log_batch`` calls as MLflow's limits allow."""
        param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for m, p, t in batches(list(metrics), param_list, tag_list):
            retrying(self.client.log_batch, run_id, metrics=m, params=p, tags=t)


def _marked(run: Any, best_name: str) -> bool:
    return bool(run.info.run_name == best_name and run.data.tags.get(BEST_TAG) == "true")


def _plain_name(run: Any) -> str:
    """A run's name without the best mark: ``trial-0007``, or with its outcome (``pruned``, …)."""
    tags = run.data.tags
    state = "KILLED" if run.info.status == "KILLED" else tags.get(STATE_TAG)
    return trial_run_name(int(tags.get(TRIAL_TAG, "0")), state)


def _not_logged(number: int, err: Exception) -> None:
    # Retried already (tracking.shared.retrying). The study keeps the trial: the next trial's
    # end, or else the next run's back-fill, logs it (into the run begun, if there is one).
    log.warning(
        f"MLflow: trial {number} not fully logged (tried {ATTEMPTS} times): {_one_line(err)}; "
        "the next `tuning sweep` on this study logs it"
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _one_line(err: Exception) -> str:
    return first_line(err)[:300]


def rehearsal_tag(training: TrainingConfig) -> dict[str, str]:
    """``tuning.rehearsal=true`` on a rehearsal's runs (``training.simulate_epoch_seconds``):
    their values are made up, and a reader of the MLflow UI must see it."""
    return {REHEARSAL_TAG: "true"} if training.simulate_epoch_seconds is not None else {}
