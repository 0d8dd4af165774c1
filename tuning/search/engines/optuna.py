"""The Optuna engine: study, sampler, pruner and storage around the engine-neutral trial runner."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
from hydra.utils import instantiate
from optuna.trial import FrozenTrial, TrialState

from tuning.errors import ConfigError, TrialFailed
from tuning.results.summary import StudySummary
from tuning.search.engines.base import Engine, FailureStreak, TrialObserver
from tuning.search.engines.optuna_stale import (
    PIDNS_ATTR,
    WORKER_ATTR,
    fail_stale_trials,
    pid_namespace,
    requeue_interrupted,
    worker_id,
)
from tuning.search.engines.optuna_storage import study_lock
from tuning.search.engines.optuna_study import open_study, summarize
from tuning.search.runner import FAIL_ATTRS, TrialRunner, noting_interrupts
from tuning.search.selection import Selection, gap_key, overfit, parse_selection
from tuning.search.space import SearchSpace
from tuning.search.workers import STREAM_ATTR, sampler_seed, worker_index, worker_key

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def make_sampler(config: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """Instantiate the ``sampler`` config group (``_target_`` + options)."""
    return _instantiate("sampler", config)


def make_pruner(config: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Instantiate the ``pruner`` config group (``_target_`` + options)."""
    return _instantiate("pruner", config)


def _instantiate(group: str, config: Mapping[str, Any]) -> Any:
    name = config.get("name", config.get("_target_"))
    # Optuna imports some samplers' packages lazily (GPSampler: torch), so a missing one would
    # only fail inside the first trial; `requires:` lets the config say so up front.
    for package in config.get("requires") or ():
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                group, f"{name} needs the package '{package}'; install it: pip install {package}"
            )
    options = {k: v for k, v in config.items() if k not in ("name", "requires", "reseed_on_resume")}
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
    sampler_config: Mapping[str, Any],
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
    seed = sampler_config.get("seed")
    if seed is None or not sampler_config.get("reseed_on_resume", True):
        return None
    trials = study.get_trials(deepcopy=False)
    # Trials that ran (an enqueued, WAITING trial drew nothing from the sampler yet).
    ran = sum(t.state != TrialState.WAITING for t in trials)
    others = any(t.state == TrialState.RUNNING for t in trials)
    key = worker_key(index, created=created, ran=ran, others_running=others, worker=worker_id())
    stream = sampler_seed(int(seed), ran, key)
    if stream != int(seed):
        study.sampler = make_sampler({**sampler_config, "seed": stream})
    return stream


class Objective:
    """Samples a trial's hyperparameters, has the runner train it, stores what it measured."""

    def __init__(
        self,
        space: SearchSpace | None,
        runner: TrialRunner,
        selection: Selection | None = None,
        stream: int | None = None,
    ) -> None:
        if space is None:
            raise RuntimeError("OptunaEngine.open() was not called")
        self.space = space
        self.runner = runner
        self.selection = selection or Selection()
        self.stream = stream  # this worker's sampler seed, kept on its trials

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        # Imported here: the engine module itself must stay importable without TensorFlow.
        from optuna_integration import KerasPruningCallback

        trial.set_user_attr(WORKER_ATTR, worker_id())  # lets a later run see this process died
        trial.set_user_attr(PIDNS_ATTR, pid_namespace())
        if self.stream is not None:
            trial.set_user_attr(STREAM_ATTR, self.stream)
        for inherited in FAIL_ATTRS:  # copied by Optuna's retry of a stale trial
            if trial.user_attrs.get(inherited) is not None:
                trial.set_user_attr(inherited, None)
        try:
            hp = self.space.suggest(trial)
        except KeyboardInterrupt:  # Ctrl-C before training began: still retried on resume
            trial.set_user_attr("interrupted", True)
            raise
        record = self.runner.start(trial.number, hp)
        for key, value in self.runner.describe(record).items():
            trial.set_user_attr(key, value)
        # Optuna cannot prune a multi-objective trial (Trial.report refuses): pareto trains each
        # trial to its own early stop.
        pareto = self.selection.mode == "pareto"
        pruning = [] if pareto else [KerasPruningCallback(trial, self.runner.metric)]
        try:
            value, attrs = self.runner.train(
                record,
                callbacks=pruning,
                passthrough=(optuna.TrialPruned,),
                suggester=trial,  # a custom model's builder draws its values as it builds
            )
        except optuna.TrialPruned:
            trial.set_user_attr("epochs_trained", len(record.history.get("loss", [])))
            raise
        except BaseException as err:
            for key, v in self.runner.failure_attrs(record, err).items():
                trial.set_user_attr(key, v)
            raise  # TrialFailed: Optuna records FAIL and goes on; anything else stops the sweep
        for key, v in attrs.items():
            trial.set_user_attr(key, v)
        return self._objectives(trial, value, attrs)

    def _objectives(
        self, trial: optuna.Trial, value: float, attrs: Mapping[str, Any]
    ) -> float | tuple[float, float]:
        """constrained: the gap's excess over ``max_gap`` as Optuna's constraint (TPE, GP and
        NSGA-II steer toward feasible trials; <= 0 is feasible). pareto: (value, overfit gap)."""
        gap = attrs.get(gap_key(self.runner.metric))
        if self.selection.mode == "constrained" and gap is not None and self.selection.max_gap is not None:
            trial.set_constraint("gap", float(gap) - self.selection.max_gap)
        if self.selection.mode == "pareto":
            if gap is None:  # a metric with no training twin: no gap to trade against
                reason = f"no {gap_key(self.runner.metric)} measured for selection=pareto"
                trial.set_user_attr("fail_reason", reason)
                raise TrialFailed(reason)
            return value, overfit(float(gap))
        return value


class _Finish:
    """Study callback: hands each finished trial's record to the observers; stops on repeated failures."""

    def __init__(
        self, runner: TrialRunner, observers: Sequence[TrialObserver], streak: FailureStreak
    ) -> None:
        self.runner = runner
        self.observers = observers
        self.streak = streak

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        record = self.runner.records.pop(trial.number, None)
        if record is None:
            return
        record.state = trial.state.name
        record.value = trial.values[0] if trial.values else None  # pareto: [value, gap]
        if trial.duration is not None:  # one duration everywhere: the study's (report, MLflow, progress)
            record.seconds = trial.duration.total_seconds()
        if trial.state == TrialState.FAIL:
            record.error = (
                record.error or trial.user_attrs.get("fail_reason") or "objective returned no finite value"
            )
        stop = self.streak.add(record.state, record.error)
        summary = summarize(study)
        for observer in self.observers:
            observer.on_trial_end(summary, record)
        if stop:
            study.stop()


class OptunaEngine(Engine):
    """Optuna's samplers and pruners, on any Optuna storage (SQLite, PostgreSQL/MySQL, journal file)."""

    name: ClassVar[str] = "optuna"

    def __init__(self, settings: Mapping[str, Any], storage_url: str) -> None:
        self.sampler_config = dict(settings["sampler"])
        self.pruner_config = dict(settings["pruner"])
        self.study_config = dict(settings["study"])
        self.sampler = make_sampler(self.sampler_config)
        self.pruner = make_pruner(self.pruner_config)
        self.selection = parse_selection(settings)
        self.url = storage_url
        self._study: optuna.Study | None = None
        self.space: SearchSpace | None = None
        self.stream: int | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("OptunaEngine.open() was not called")
        return self._study

    def describe(self) -> str:
        pruner = (
            "off (selection=pareto)" if self.selection.mode == "pareto" else self.pruner_config.get("name")
        )
        line = f"optuna: sampler {self.sampler_config.get('name')}, pruner {pruner}"
        if self.selection.mode != "best":
            line += f", selection {self.selection.mode} (max_gap {self.selection.max_gap})"
        return line

    def location(self) -> str:
        from tuning.redaction import redact

        return redact(self.url) or ""

    def open(
        self,
        space: SearchSpace,
        *,
        user_attrs: Mapping[str, Any],
        identity: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> list[str]:
        # Our progress lines report every trial (failures with their reason, tracebacks are kept
        # in the trial's user attributes): Optuna's own per-trial logs would repeat them.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space = space
        self._study, created = open_study(
            self.study_config,
            self.url,
            self.sampler,
            self.pruner,
            user_attrs=user_attrs,
            identity=identity,
            config=config,
            two_objectives=self.selection.mode == "pareto",
        )
        study = self._study
        notes = []
        n_trials = int(self.study_config["n_trials"])
        # Every run, even one with nothing left to train: a worker killed mid-trial leaves it RUNNING.
        with study_lock(self.url, study.study_name):  # workers starting together: failed once
            stale = fail_stale_trials(study)
        if stale:
            done = len(study.get_trials(deepcopy=False, states=FINISHED))
            notes.append(
                f"trial(s) {stale} were left running by a worker that stopped (its process is gone, or no "
                f"heartbeat for over {self.study_config.get('grace_period')} s): marked FAIL"
                + ("" if done >= n_trials else "; re-running each once with the same parameters")
            )
        self.stream = reseed_on_resume(study, self.sampler_config, created=created, index=worker_index())
        if self.stream is not None and self.stream != self.sampler_config.get("seed"):
            log.debug(f"sampler seed {self.stream}: this worker's own stream, not a replay")
        return notes

    def run(
        self,
        runner: TrialRunner,
        *,
        n_trials: int,
        timeout: float | None,
        observers: Sequence[TrialObserver],
        max_consecutive_failures: int,
    ) -> None:
        study = self.study
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        if remaining <= 0:
            return
        with study_lock(self.url, study.study_name):  # once, however many workers start together
            requeued = requeue_interrupted(study)
        if requeued:
            log.info(f"re-running interrupted trial(s) {requeued} with the same parameters")
        streak = FailureStreak(max_consecutive_failures)
        try:
            with noting_interrupts(runner):
                study.optimize(
                    Objective(self.space, runner, self.selection, self.stream),
                    n_trials=remaining,
                    timeout=timeout,
                    catch=(TrialFailed,),
                    callbacks=[
                        _Finish(runner, observers, streak),
                        optuna.study.MaxTrialsCallback(n_trials, states=FINISHED),
                    ],
                    gc_after_trial=False,
                )
        except KeyboardInterrupt:
            # Optuna has marked the running trial FAIL; tell observers so its run is closed too.
            records = list(runner.records.values())
            runner.records.clear()
            summary = summarize(study)
            for record in records:
                record.state = "FAIL"
                record.error = "interrupted"
                for observer in observers:
                    observer.on_trial_end(summary, record)
            raise
        streak.check()

    def summary(self) -> StudySummary:
        return summarize(self.study)

    def write_plots(self, folder: Path, plotlyjs: str = "none") -> list[Path]:
        from tuning.search.engines.optuna_plots import write_plots

        return write_plots(self.study, folder, plotlyjs)
