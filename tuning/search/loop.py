"""The search loop, one for every engine: ask for a point, train it, report, classify, tell.

An engine only proposes and learns (``Engine.ask / report / tell``); this module owns each
trial's life: its record and seed, the per-epoch reports that may prune it, the failure policy (a
trial's own failure is that trial's FAIL and the study goes on; an error of ours stops the sweep),
Ctrl-C and SIGTERM (the trial is told as stopped and its observers see it KILLED, then the
interrupt goes on up), the observers (progress, MLflow child runs), the failure streak and the
budgets (``study.n_trials``, ``study.timeout``, this run's attempts, ``stop=converged``). No
TensorFlow at import.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuning import interrupts
from tuning.config.schema import BudgetConfig, StopConfig
from tuning.errors import TrialFailed, TrialPruned
from tuning.interrupts import shielded
from tuning.redaction import redact
from tuning.search.budget import EPOCHS_ATTR, RESUMED_ATTR, STOPPED_BY_ATTR, exhausted, spent
from tuning.search.engines.base import (
    STOP_ATTR,
    Engine,
    Outcome,
    Proposal,
    TooManyFailures,
    TrialObserver,
)
from tuning.search.runner import TrialRunner
from tuning.study.record import TrialRecord
from tuning.study.summary import StudySummary

log = logging.getLogger("tuning")


class FailureStreak:
    """Counts trials that failed in a row; any finished trial resets it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last_error: str | None = None

    def add(self, state: str, error: str | None) -> bool:
        """Count one ended trial; True when the streak reached the limit (0: never)."""
        if state == "FAIL":
            self.count += 1
            self.last_error = error
        else:
            self.count = 0
        return self.full()

    def full(self) -> bool:
        return bool(self.limit) and self.count >= self.limit

    def check(self) -> None:
        """Raise ``TooManyFailures`` when the search ended on a full streak."""
        if self.full():
            raise TooManyFailures(f"{self.count} trials in a row failed; last error: {self.last_error}")


@dataclass(frozen=True)
class Budget:
    """When the search stops: ``n_trials`` finished in the study (COMPLETE or PRUNED, whichever
    worker ran them), ``timeout`` seconds of this run (None: no limit),
    ``max_consecutive_failures`` failed trials in a row (0: never), or, with ``stop=converged``,
    when the engine judges that more trials are unlikely to beat the best."""

    n_trials: int | None  # None: only ``spend`` ends the search
    timeout: float | None = None
    max_consecutive_failures: int = 0
    stop: StopConfig = field(default_factory=StopConfig)
    spend: BudgetConfig = field(default_factory=BudgetConfig)  # budget.epochs / minutes (search.budget)


def check_converged(engine: Engine, budget: Budget) -> str | None:
    """With ``stop=converged``: the line saying why the search ends now, stored with the study
    (``STOP_ATTR``, with the trial count then); None: go on (or ``stop=none``)."""
    if not budget.stop.converged:
        return None
    found = engine.converged(budget.stop)
    if found is None:
        return None
    finished = engine.n_finished()
    of = "" if budget.n_trials is None else f" of {budget.n_trials}"  # None: a budget ends the study
    line = f"stop=converged: {found.why}; stopped after {finished}{of} finished trials"
    attrs = {
        "rule": "converged",
        "line": line,
        "best": found.best_number,
        "value": found.best_value,
        "completed": found.completed,
        "finished": finished,
        "trials": len(engine.summary().trials),  # a later trial makes it an earlier run's stop
    }
    with shielded():
        engine.record_stop(attrs)
    return line


def stopped_converged(summary: StudySummary) -> str | None:
    """The stop line when the study's last trials ended in a ``stop=converged`` stop (this run's,
    or an earlier run's); None when it never stopped so, or trials were added after it."""
    record = summary.user_attrs.get(STOP_ATTR)
    if not isinstance(record, Mapping) or record.get("trials") != len(summary.trials):
        return None
    return str(record.get("line", "stop=converged"))


def _attempts(engine: Engine, budget: Budget) -> int:
    """Trials this run may try: those missing from ``n_trials``; with a budget alone, one per
    epoch it allows (a trial that fails before training spends none), or no limit by minutes."""
    if budget.n_trials is not None:
        return budget.n_trials - engine.n_finished()
    return budget.spend.epochs if budget.spend.epochs is not None else sys.maxsize


def _trials_left(engine: Engine, budget: Budget) -> int | None:
    """Trials still missing from ``n_trials`` (None without it: a budget ends the search). Read
    once per trial: the loop's stop test and its last-trial rule share it."""
    return budget.n_trials - engine.n_finished() if budget.n_trials is not None else None


def _budget_spent(engine: Engine, spend: BudgetConfig) -> bool:
    """The study spent ``budget.epochs`` or ``budget.minutes``: no trial starts (its trials are
    read only when a budget is set)."""
    return spend.limited and exhausted(spend, spent(engine.trials())) is not None


def _claim(
    engine: Engine, runner: TrialRunner, proposal: Proposal, spend: BudgetConfig, trained: int
) -> str | None:
    """Before the trial's next epoch (it has ``trained``): claim it, then read what the study
    spent; the budget's key when it is spent (the trial stops), else None. The claim is written
    before the total is read, so two workers claiming the last epoch both see the other's."""
    if not spend.limited or (
        runner.training.max_epochs is not None and trained >= runner.training.max_epochs
    ):
        return None  # no next epoch: the trial ends on its own
    if spend.epochs is not None:
        with shielded():
            engine.begin(proposal, {EPOCHS_ATTR: trained + 1})
    key = exhausted(spend, spent(engine.trials()), claiming=True)
    if key is not None and spend.epochs is not None:  # refused: withdrawn at once, so that another
        with shielded():  # worker's "spent" line never counts an epoch nobody will train
            engine.begin(proposal, {EPOCHS_ATTR: trained})
    return key


def _took_over(engine: Engine, proposal: Proposal, spend: BudgetConfig | None, epochs: int) -> None:
    """A re-run continuing an interrupted trial's checkpoint: note the ``epochs`` it took over,
    which the budget counted on the interrupted trial already."""
    if epochs and spend is not None and spend.limited:
        with shielded():
            engine.begin(proposal, {RESUMED_ATTR: epochs})


def run_search(
    engine: Engine, runner: TrialRunner, budget: Budget, observers: Sequence[TrialObserver]
) -> str | None:
    """Run trials until the budget is spent; trials already in the study count. Returns the
    line saying why the search stopped itself (``stop=converged``, logged too), else None.

    This run tries at most as many trials as were missing when it began (a failed trial uses one
    up, as in Optuna's ``optimize``): a study whose every trial fails ends with exit 3, not a loop.
    With ``stop=converged`` the engine is asked before each trial (every worker's trials count).

    Raises:
        TooManyFailures: the search ended on ``max_consecutive_failures`` failed trials in a row.
        KeyboardInterrupt / Terminated: Ctrl-C / SIGTERM, after the running trial was told.
    """
    streak = FailureStreak(budget.max_consecutive_failures)
    deadline = time.monotonic() + budget.timeout if budget.timeout else None
    attempts = _attempts(engine, budget)
    converged: str | None = None
    with engine.searching(runner.build_once), interrupts.handled():
        while (
            attempts > 0
            and not streak.full()
            and ((left := _trials_left(engine, budget)) is None or left > 0)
        ):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if _budget_spent(engine, budget.spend):  # every worker's trials, every earlier run's
                break
            interrupts.check()  # a signal whose raise was swallowed (a gc callback)
            converged = check_converged(engine, budget)
            if converged is not None:
                log.info(converged)
                break
            with shielded(release_at_exit=False):  # a signal held here is raised inside run_trial
                proposal = engine.ask()
            if proposal is None:
                interrupts.release()
                log.info(f"{engine.describe()}: the algorithm has no further point to propose")
                break
            attempts -= 1
            last = left is not None and (attempts == 0 or left <= 1)
            record = run_trial(engine, runner, proposal, observers, spend=budget.spend, last=last)
            streak.add(record.state, record.error)
    streak.check()
    return converged


def run_trial(
    engine: Engine,
    runner: TrialRunner,
    proposal: Proposal,
    observers: Sequence[TrialObserver],
    *,
    spend: BudgetConfig | None = None,
    last: bool = False,
) -> TrialRecord:
    """One trial's life: start its record, train it, tell the engine, then the observers.

    ``last``: the run's last trial under ``study.n_trials``; while no trial of the study has
    completed, the pruner does not stop it (see ``_train``)."""
    record: TrialRecord | None = None
    try:
        interrupts.release()  # one that came while the trial was asked for stops it here
        with shielded():
            record = runner.start(proposal.number, proposal.hyperparameters)
            if proposal.seed is not None:  # a re-run of an interrupted trial draws what it drew
                record.seed = proposal.seed
            described = runner.describe(record)
            engine.begin(proposal, described)
        outcome = _train(engine, runner, proposal, record, described, spend=spend, last=last)
    except BaseException as err:  # Ctrl-C, SIGTERM or an error of ours: the sweep stops
        with shielded():
            _stop(engine, runner, proposal, record, err, observers=observers)
        raise
    with shielded():  # told and logged whole; a signal meanwhile stops the sweep right after
        told = engine.tell(proposal, outcome)
        record.state = told.state
        record.value = told.value
        if told.seconds is not None:  # one duration everywhere: the study's (report, MLflow, progress)
            record.seconds = told.seconds
        if told.state == "FAIL":
            record.error = (
                record.error or told.attrs.get("fail_reason") or "objective returned no finite value"
            )
        _notify(engine, record, observers)
    _drop_checkpoint(runner, proposal.number)  # it ended on its own: nothing will continue it
    return record


def _train(
    engine: Engine,
    runner: TrialRunner,
    proposal: Proposal,
    record: TrialRecord,
    described: dict[str, Any],
    *,
    spend: BudgetConfig | None = None,
    last: bool = False,
) -> Outcome:
    """Train the trial; its own ends (COMPLETE, PRUNED, FAIL) as an outcome, anything else raised.
    With a budget (``spend``) each epoch is claimed before it trains: a spent budget prunes the
    trial at that epoch end (``stopped_by``), or before its first. ``last``: see ``_LastTrial``."""
    stopped_by: list[str] = []
    guard = _LastTrial(engine, record.number, last)

    def epoch_end(epoch: int, logs: Mapping[str, float]) -> None:
        """After each epoch, Keras's or a rehearsal's: the command's signal (its raise from the
        handler can be swallowed in TensorFlow's gc hook), then the engine's pruning report."""
        interrupts.check()
        value = logs.get(runner.metric)
        if engine.supports_pruning and value is not None:
            with shielded():
                prune = engine.report(proposal, epoch, value)
            if prune and not guard.overrules(epoch):
                raise TrialPruned(f"pruned at epoch {epoch + 1}")
        if spend is not None and (key := _claim(engine, runner, proposal, spend, epoch + 1)):
            stopped_by.append(key)
            raise TrialPruned(f"{key} spent at epoch {epoch + 1}")

    if spend is not None and (key := _claim(engine, runner, proposal, spend, 0)):
        none_trained = {**described, "epochs_trained": 0, STOPPED_BY_ATTR: key}
        return _outcome(runner, record, "PRUNED", None, none_trained)
    callbacks: list[Any] = []
    if runner.checkpoints is not None:
        from tuning.search.checkpoints import prepare

        checkpoint, start = prepare(runner.checkpoints, proposal.number, proposal.retry_of)
        callbacks.append(checkpoint)
        _took_over(engine, proposal, spend, start.epochs if start is not None else 0)
        if start is not None and _replay(engine, proposal, start.history.get(runner.metric, []), guard):
            record.history = start.history
            pruned = {**described, "epochs_trained": start.epochs}
            return _outcome(runner, record, "PRUNED", None, pruned)
    try:
        value, attrs = runner.train(
            record,
            epoch_end=epoch_end,
            callbacks=callbacks,
            passthrough=(TrialPruned,),
            suggester=proposal.suggester,
        )
    except TrialPruned:
        pruned = {**described, "epochs_trained": len(record.history.get("loss", []))}
        if stopped_by:  # the budget, not the pruner, ended it
            pruned[STOPPED_BY_ATTR] = stopped_by[0]
        return _outcome(runner, record, "PRUNED", None, pruned)
    except TrialFailed as err:
        return _outcome(runner, record, "FAIL", None, {**described, **runner.failure_attrs(record, err)})
    return _outcome(runner, record, "COMPLETE", value, {**described, **attrs})


def _outcome(
    runner: TrialRunner,
    record: TrialRecord,
    state: str,
    value: float | None,
    attrs: dict[str, Any],
    *,
    stopped: bool = False,
) -> Outcome:
    return Outcome(
        state,
        value,
        attrs,
        stopped=stopped,
        hyperparameters=record.hyperparameters,
        history=dict(enumerate(record.history.get(runner.metric, []))),
        start_time=record.start_time,
        seconds=record.seconds or None,
    )


def _stop(
    engine: Engine,
    runner: TrialRunner,
    proposal: Proposal,
    record: TrialRecord | None,
    err: BaseException,
    *,
    observers: Sequence[TrialObserver],
) -> None:
    """Tell the engine the trial stopped with the sweep; an interrupted one is also handed to
    the observers (its MLflow run ends KILLED). An error of ours is logged by the command; the
    next run back-fills that trial's child run."""
    interrupted = isinstance(err, KeyboardInterrupt) or interrupts.received() is not None
    if record is None and interrupted:  # stopped before it trained: still a record and a child run
        record = runner.start(proposal.number, proposal.hyperparameters)
    if record is None:
        attrs: dict[str, Any] = (
            {"interrupted": True}
            if interrupted
            else {"fail_reason": (redact(f"{type(err).__name__}: {err}") or "")[:2000]}
        )
        engine.tell(proposal, Outcome("FAIL", attrs=attrs, stopped=True))
        return
    if interrupted:
        record.error = "interrupted"
    else:  # an error of ours: the trial is not re-run, so nothing continues its checkpoint
        _drop_checkpoint(runner, proposal.number)
    attrs = {**runner.describe(record), **runner.failure_attrs(record, err)}
    engine.tell(proposal, _outcome(runner, record, "FAIL", None, attrs, stopped=True))
    if interrupted:
        record.state = "FAIL"
        _notify(engine, record, observers)


class _LastTrial:
    """The rule that a run's last trial under ``study.n_trials`` is not pruned while no trial of
    the study (any worker's, any run's) has completed, so that a short sweep ends with a model to
    export (best.yaml): ASHA with ``bootstrap_count`` >= 1, or other workers' trials, could prune
    every trial of it. Optuna's pruners see one trial at a time, hence this rule in the loop."""

    def __init__(self, engine: Engine, number: int, last: bool) -> None:
        self.engine, self.number, self.last = engine, number, last
        self.keeping = False  # once kept, it trains on to its end

    def overrules(self, epoch: int) -> bool:
        """True: the pruner asked to stop the trial after ``epoch`` and it trains on."""
        if not self.last:
            return False
        if not self.keeping:
            if any(t.state == "COMPLETE" for t in self.engine.trials()):
                self.last = False  # another trial completed: the pruner decides from now on
                return False
            self.keeping = True
            log.info(
                f"trial {self.number}: the pruner would stop it at epoch {epoch + 1}; it trains on, "
                "as the sweep's last trial with none complete yet"
            )
        return True


def _replay(engine: Engine, proposal: Proposal, values: Sequence[float], guard: _LastTrial) -> bool:
    """Report again the epochs a resumed trial's checkpoint holds (the pruner judges a trial by
    its own intermediate values, and a re-run is a new trial); True: the pruner stops it now
    (unless ``guard`` keeps the last trial).
    Nothing is logged: MLflow logs a trial's history once, at its end."""
    if not engine.supports_pruning:
        return False
    for epoch, value in enumerate(values):
        with shielded():
            prune = engine.report(proposal, epoch, value)
        if prune and not guard.overrules(epoch):
            return True
    return False


def _drop_checkpoint(runner: TrialRunner, number: int) -> None:
    """Remove a trial's per-epoch checkpoints (``training.checkpoints``) once it has ended."""
    if runner.checkpoints is not None:
        from tuning.search.checkpoints import remove

        remove(runner.checkpoints, number)


def _notify(engine: Engine, record: TrialRecord, observers: Sequence[TrialObserver]) -> None:
    if not observers:
        return
    summary = engine.summary()
    for observer in observers:
        observer.on_trial_end(summary, record)
