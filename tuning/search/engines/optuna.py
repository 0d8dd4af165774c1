"""The Optuna engine: a study (sampler, pruner, any Optuna storage) behind ``study.ask()`` / ``tell()``."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import optuna
from hydra.utils import instantiate
from optuna.trial import TrialState

from tuning.config import Settings
from tuning.config.schema import Component, StopConfig, WarmStartConfig
from tuning.config.space import SearchSpace, Suggester
from tuning.errors import ConfigError
from tuning.interrupts import shielded
from tuning.payload import Payload
from tuning.search.engines.base import STOP_ATTR, Convergence, Engine, Outcome, Proposal, StudyRecord
from tuning.search.engines.optuna_stale import (
    DEFAULT_GRACE,
    PIDNS_ATTR,
    WORKER_ATTR,
    Heartbeat,
    creator_gone,
    fail_stale_trials,
    mark_creator,
    pid_namespace,
    requeue_interrupted,
    worker_id,
)
from tuning.search.engines.optuna_stop import ConvergedStop, check_terminator
from tuning.search.engines.optuna_storage import study_lock
from tuning.search.engines.optuna_study import connect, open_study, summarize, trial_summaries
from tuning.search.engines.optuna_warm import Source, check_shared, load_source, seed_study
from tuning.search.runner import FAIL_ATTRS
from tuning.search.workers import STREAM_ATTR, sampler_seed, worker_index, worker_key
from tuning.study.selection import gap_key, overfit
from tuning.study.summary import (
    OUTCOME_ATTR,
    OWNER_ATTR,
    START_ATTR,
    WARM_FROM_ATTR,
    StudySummary,
    TrialSummary,
    flat_attrs,
)

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def make_sampler(sampler: Component) -> optuna.samplers.BaseSampler:
    """Instantiate the ``sampler`` config group (``_target_`` + options)."""
    made: optuna.samplers.BaseSampler = _instantiate("sampler", sampler)
    return made


def make_pruner(pruner: Component) -> optuna.pruners.BasePruner:
    """Instantiate the ``pruner`` config group (``_target_`` + options)."""
    made: optuna.pruners.BasePruner = _instantiate("pruner", pruner)
    return made


def _instantiate(group: str, component: Component) -> Any:
    name = component.name
    # Optuna imports some samplers' packages lazily (GPSampler: torch), so a missing one would
    # only fail inside the first trial; `requires:` lets the config say so up front.
    for package in component.options.get("requires") or ():
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                group, f"{name} needs the package '{package}'; install it: pip install {package}"
            )
    options = {k: v for k, v in component.options.items() if k not in ("requires", "reseed_on_resume")}
    try:
        with warnings.catch_warnings():  # multivariate/group TPE are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return instantiate(options)
    except Exception as err:  # Hydra wraps the constructor's own error; show its last line.
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        if isinstance(cause, ImportError):
            message = f"needs an optional package ({message}); see the README's sampler table"
        raise ConfigError(group, f"{name}: {message}") from None


def reseed_on_resume(
    study: optuna.Study,
    sampler: Component,
    *,
    created: bool = False,
    index: int | None = None,
) -> int | None:
    """Give this worker's sampler its own random stream; returns its seed (None: unchanged).

    Optuna's samplers seed their random generator once per process. Resumed with the same seed,
    TPE's start-up trials and random search draw exactly what the first run drew (checked with
    Optuna 5: a study resumed after 3 trials repeated trials 0-2 as 3-5), and workers started
    together with one seed draw the same trials as each other (3 workers: 11 trials, 4 distinct).
    A worker alone keeps ``seed`` on a new study and ``seed`` + the trials already in it on a
    resume, so it stays reproducible; a worker among several derives its seed from ``seed``,
    those trials and its index or process (``tuning.search.workers``). Samplers that index a
    fixed sequence by the study's trials (QMC: ``reseed_on_resume: false``) keep theirs.
    """
    seed = sampler.options.get("seed")
    if seed is None or not sampler.options.get("reseed_on_resume", True):
        return None
    trials = study.get_trials(deepcopy=False)
    # Trials that ran (an enqueued, WAITING trial drew nothing from the sampler yet).
    ran = sum(t.state != TrialState.WAITING for t in trials)
    # Another worker's trial (one with no worker yet is a dead process's until fail_stale_trials
    # says so: a live worker names itself right after the row is made).
    others = any(t.state == TrialState.RUNNING and WORKER_ATTR in flat_attrs(t.user_attrs) for t in trials)
    gone = not created and not ran and creator_gone(study)
    key = worker_key(
        index, created=created, ran=ran, others_running=others, worker=worker_id(), creator_gone=gone
    )
    stream = sampler_seed(int(seed), ran, key)
    if stream != int(seed):
        study.sampler = make_sampler(replace(sampler, options={**sampler.options, "seed": stream}))
    return stream


class OptunaEngine(Engine):
    """Optuna's samplers and pruners, on any Optuna storage (SQLite, PostgreSQL/MySQL, journal file)."""

    name: ClassVar[str] = "optuna"
    supports_workers: ClassVar[bool] = True
    supports_pruning: ClassVar[bool] = True
    supports_constraints: ClassVar[bool] = True
    supports_multi_objective: ClassVar[bool] = True
    supports_converged_stop: ClassVar[bool] = True
    supports_budget: ClassVar[bool] = True
    supports_warm_start: ClassVar[bool] = True
    storages: ClassVar[tuple[str, ...]] = ("sqlite", "postgresql", "mysql", "journal")

    def __init__(self, settings: Settings, storage_url: str) -> None:
        self.sampler_config, self.pruner_config = settings.sampler, settings.pruner
        self.study_config = settings.study
        self.sampler = make_sampler(self.sampler_config)
        self.pruner = make_pruner(self.pruner_config)
        self.selection = settings.selection
        check_terminator(settings.stop, two_objectives=self.selection.mode == "pareto")
        self.seed = settings.seed
        self.warm, self.paths_root, self.top = settings.warm_start, settings.paths_root, settings.study.top
        self.checked_space = settings.space  # warm_start.from is checked against it before open()
        self.stop: ConvergedStop | None = None  # made on the first question (stop=converged)
        self.runner_metric = settings.study.metric  # what trials report (their value)
        self.url = storage_url
        self._study: optuna.Study | None = None
        self.storage: optuna.storages.BaseStorage | None = None
        self.space: SearchSpace | None = None
        self.stream: int | None = None
        self.heartbeats: dict[int, Heartbeat] = {}
        # What this process wrote to each running trial's packed user attributes (``start``,
        # then ``outcome``: tuning.study.summary): a value already stored is not written again
        # (the runner hands the trial's seed, metric and direction in at its start and again
        # with its outcome): experiments/benchmarks/writes.py counts the writes.
        self.written: dict[int, dict[str, Any]] = {}
        self.ended: dict[int, TrialSummary] = {}  # records of ended trials, each made once
        # Finished trials in the summary read right after a trial was told, for n_finished.
        self.counted: int | None = None
        self.told = False

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("OptunaEngine.open() was not called")
        return self._study

    def describe(self) -> str:
        pruner = "off (selection=pareto)" if self.selection.mode == "pareto" else self.pruner_config.name
        line = f"optuna: sampler {self.sampler_config.name}, pruner {pruner}"
        if self.selection.mode != "best":
            line += f", selection {self.selection.mode} (max_gap {self.selection.max_gap})"
        return line

    def location(self) -> str:
        from tuning.redaction import redact

        return redact(self.url) or ""

    def open(self, space: SearchSpace, record: StudyRecord) -> list[str]:
        # Our progress lines report every trial (failures with their reason, tracebacks are kept
        # in the trial's user attributes): Optuna's own per-trial logs would repeat them.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space = space
        self.storage = connect(self.study_config, self.url)
        self._study, created = open_study(
            self.study_config,
            self.storage,
            self.url,
            self.sampler,
            self.pruner,
            record=record,
            two_objectives=self.selection.mode == "pareto",
        )
        study = self._study
        if created:  # a worker that finds no trial in it later can tell a resume from a join
            mark_creator(study)
        notes = []
        n_trials = self.study_config.n_trials
        grace = float(self.study_config.grace_period or DEFAULT_GRACE)
        # Every run, even one with nothing left to train: a worker killed mid-trial leaves it RUNNING.
        with study_lock(self.url, study.study_name):  # workers starting together: failed once
            stale = fail_stale_trials(study, self.storage, grace)
        if stale:
            done = len(study.get_trials(deepcopy=False, states=FINISHED))
            notes.append(
                f"trial(s) {stale} were left running by a worker that stopped (its process is gone, or no "
                f"heartbeat for over {grace:g} s): marked FAIL"
                + (
                    ""
                    if n_trials is not None and done >= n_trials
                    else "; re-running each once with the same parameters"
                )
            )
        if self.warm.source is not None:  # once per study, whichever worker gets the lock first
            with study_lock(self.url, study.study_name), shielded():
                notes += seed_study(
                    study, self._warm_source(self.warm), space, record.identity, top=self.warm.top or self.top
                )
        self.stream = reseed_on_resume(study, self.sampler_config, created=created, index=worker_index())
        if self.stream is not None and self.stream != self.sampler_config.options.get("seed"):
            log.debug(f"sampler seed {self.stream}: this worker's own stream, not a replay")
        return notes

    @contextmanager
    def searching(self, build: Callable[[str, Suggester], None]) -> Iterator[None]:
        """Queue once more, before the first trial, the points of trials a Ctrl-C stopped."""
        study = self.study
        with study_lock(self.url, study.study_name):  # once, however many workers start together
            requeued = requeue_interrupted(study)
        if requeued:
            log.info(f"re-running interrupted trial(s) {requeued} with the same parameters")
        yield

    def ask(self) -> Proposal:
        """``study.ask()`` (an enqueued point first), its point drawn from our space."""
        study = self.study
        if self.space is None or self.storage is None:
            raise RuntimeError("OptunaEngine.open() was not called")
        if isinstance(self.storage, optuna.storages.RDBStorage) and self.storage.get_heartbeat_interval():
            optuna.storages.fail_stale_trials(study)  # as optimize() does before each trial
        with warnings.catch_warnings():  # the heartbeat this engine records itself (Heartbeat)
            warnings.filterwarnings(
                "ignore", "Heartbeat of storage is supposed to be used with Study.optimize"
            )
            trial = study.ask()
        # A fresh trial carries no attribute; a queued one (a re-run, a warm start) or one Optuna
        # re-queued from a stale trial carries some: only those need the study read of _retried.
        carried = bool(trial.user_attrs)
        try:
            # WORKER_ATTR lets a later run see this process died.
            owner: dict[str, Any] = {WORKER_ATTR: worker_id(), PIDNS_ATTR: pid_namespace()}
            if self.stream is not None:
                owner[STREAM_ATTR] = self.stream
            trial.set_user_attr(OWNER_ATTR, owner)
            if carried:  # Optuna's retry of a stale trial copies its attributes, failure ones too
                for key in FAIL_ATTRS:
                    if trial.user_attrs.get(key) is not None:
                        trial.set_user_attr(key, None)
            hp = self.space.suggest(trial)
        except BaseException as err:  # Ctrl-C (retried on resume) or an error of ours, before training
            attrs = {"interrupted": True} if isinstance(err, KeyboardInterrupt) else {"fail_reason": str(err)}
            self._store(trial, attrs, None, TrialState.FAIL)
            raise
        heartbeat = Heartbeat(self.storage, study, trial.number)
        heartbeat.start()
        self.heartbeats[trial.number] = heartbeat
        # A custom model's builder draws its values from the trial as it builds.
        retry_of, seed = self._retried(trial) if carried else (None, None)
        return Proposal(trial.number, hp, suggester=trial, trial=trial, retry_of=retry_of, seed=seed)

    def _retried(self, trial: optuna.Trial) -> tuple[int | None, int | None]:
        """The interrupted trial this one re-runs and that trial's seed: the re-run continues
        its checkpoint and must draw what it drew. ``retry_of`` is set by ``requeue_interrupted``
        (a dead worker on this host); a trial Optuna's heartbeat check re-queued (a worker on
        another host) names it in Optuna's own record, read by its public helper."""
        retry_of = trial.user_attrs.get("retry_of")
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        if not isinstance(retry_of, int) and trial.number in trials:
            retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
                trials[trial.number]
            )
        if not isinstance(retry_of, int):
            return None, None
        seed = flat_attrs(trials[retry_of].user_attrs).get("seed") if retry_of in trials else None
        return retry_of, seed if isinstance(seed, int) else None

    def begin(self, proposal: Proposal, attrs: Payload) -> None:
        """Store ``attrs`` with the running trial: its ``start`` attribute holds every entry
        begun so far, rewritten whole (one write) when one is new or changed."""
        if self._unwritten(proposal.number, attrs):
            proposal.trial.set_user_attr(START_ATTR, dict(self.written[proposal.number]))

    def _unwritten(self, number: int, attrs: Payload) -> dict[str, Any]:
        """The entries of ``attrs`` this process has not stored on running trial ``number``
        already, noted as stored now."""
        written = self.written.setdefault(number, {})
        new = {k: v for k, v in attrs.items() if k not in written or written[k] != v}
        written.update(new)
        return new

    def report(self, proposal: Proposal, epoch: int, value: float) -> bool:
        """Optuna's ``trial.report`` / ``should_prune`` (a two-objective study does not prune:
        selection=pareto trains each trial to its own early stop)."""
        if self.selection.mode == "pareto":
            return False
        proposal.trial.report(value, step=epoch)
        return bool(proposal.trial.should_prune())

    def tell(self, proposal: Proposal, outcome: Outcome) -> Outcome:
        heartbeat = self.heartbeats.pop(proposal.number, None)
        if heartbeat is not None:
            heartbeat.stop()
        trial, attrs = proposal.trial, dict(outcome.attrs)
        values: float | list[float] | None = None
        state = TrialState[outcome.state]
        if state == TrialState.COMPLETE and outcome.value is not None:
            values, reason = self._objectives(trial, outcome.value, attrs)
            if reason is not None:
                attrs["fail_reason"] = reason
                state, values = TrialState.FAIL, None
        frozen = self._store(trial, attrs, values, state)
        self.told = True
        return replace(
            outcome,
            state=frozen.state.name,
            value=frozen.values[0] if frozen.values else None,  # pareto: [value, gap]
            attrs=attrs,
            seconds=frozen.duration.total_seconds() if frozen.duration is not None else None,
        )

    def _store(
        self, trial: optuna.Trial, attrs: Payload, values: Any, state: TrialState
    ) -> optuna.trial.FrozenTrial:
        new = self._unwritten(trial.number, attrs)
        self.written.pop(trial.number, None)  # the trial ends here
        # What a failed trial keeps stays flat (stale-trial checks read it from Optuna's records);
        # the rest, its measurements, is one attribute: one write instead of one per value.
        outcome = {k: v for k, v in new.items() if k not in FAIL_ATTRS}
        for key in FAIL_ATTRS:
            if key in new:
                trial.set_user_attr(key, new[key])
        if outcome:
            trial.set_user_attr(OUTCOME_ATTR, outcome)
        return self.study.tell(trial, values, state=state)

    def _objectives(
        self, trial: optuna.Trial, value: float, attrs: Payload
    ) -> tuple[float | list[float], str | None]:
        """constrained: the gap's excess over ``max_gap`` as Optuna's constraint (TPE, GP and
        NSGA-II steer toward feasible trials; <= 0 is feasible). pareto: (value, overfit gap);
        a metric with no training twin has no gap to trade against: the trial fails (reason)."""
        gap = attrs.get(gap_key(self.runner_metric))
        if self.selection.mode == "constrained" and gap is not None and self.selection.max_gap is not None:
            trial.set_constraint("gap", float(gap) - self.selection.max_gap)
        if self.selection.mode == "pareto":
            if gap is None:
                return value, f"no {gap_key(self.runner_metric)} measured for selection=pareto"
            return [value, overfit(float(gap))], None
        return value, None

    def check_warm_start(self, warm: WarmStartConfig, identity: Payload) -> None:
        """The earlier study or best.yaml exists and shares a dimension with the space."""
        check_shared(self._warm_source(warm), self.checked_space)

    def _warm_source(self, warm: WarmStartConfig) -> Source:
        return load_source(
            warm,
            storage=self.study_config.storage,
            paths_root=self.paths_root,
            own=self.study_config.name,
        )

    def converged(self, rule: StopConfig) -> Convergence | None:
        """Optuna's terminator on the study (``tuning.search.engines.optuna_stop``)."""
        if not rule.converged:
            return None
        if self.stop is None or self.stop.rule != rule:
            self.stop = ConvergedStop(rule, self.seed)
        return self.stop.check(self.study)

    def record_stop(self, attrs: Payload) -> None:
        self.study.set_user_attr(STOP_ATTR, dict(attrs))

    def n_finished(self) -> int:
        # The loop asks before each trial, right after the observers' summary of the one just
        # told: that reading's count, once, spares a second read of the study per trial.
        if self.counted is not None:
            count, self.counted = self.counted, None
            return count
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        return sum(WARM_FROM_ATTR not in t.user_attrs for t in trials)  # a warm start's copies ran before

    def summary(self) -> StudySummary:
        summary = summarize(self.study, self.ended)
        self.counted = summary.finished_count() if self.told else None
        self.told = False
        return summary

    def trials(self) -> list[TrialSummary]:
        return trial_summaries(self.study, self.ended)

    def write_plots(self, folder: Path, plotlyjs: str = "none") -> list[Path]:
        from tuning.search.engines.optuna_plots import write_plots

        return write_plots(self.study, folder, plotlyjs)
