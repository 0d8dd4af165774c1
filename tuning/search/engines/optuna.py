"""The Optuna engine: study, sampler, pruner and storage around the engine-neutral trial."""

from __future__ import annotations

import importlib.util
import logging
import math
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from hydra.utils import instantiate
from optuna.trial import FrozenTrial, TrialState

from tuning.errors import ConfigError, StudyStopped, Terminated, TrialFailed
from tuning.redaction import first_line, redact
from tuning.search.engines.optuna_stale import PIDNS_ATTR, WORKER_ATTR, pid_namespace, worker_id
from tuning.search.failures import is_trial_failure
from tuning.search.identity import CONFIG_ATTR, IDENTITY_ATTR, check_resume
from tuning.search.record import TrialRecord
from tuning.search.space import SearchSpace
from tuning.search.storage import open_storage

if TYPE_CHECKING:  # pandas/scikit-learn: not needed to check a config
    from tuning.data import Dataset

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialObserver(Protocol):
    """Told about every finished trial (tracking, progress)."""

    def on_trial_end(self, study: optuna.Study, record: TrialRecord) -> None: ...


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
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        if isinstance(cause, ImportError):
            message = f"needs an optional package ({message}); see the README's sampler table"
        raise ConfigError(group, f"{name}: {message}") from None


def reseed_on_resume(study: optuna.Study, sampler_config: Mapping[str, Any]) -> int | None:
    """Give a resumed study's sampler a fresh random stream: ``seed`` + the trials already in it.

    Optuna's samplers seed their random generator once per process. Resumed with the same seed,
    TPE's start-up trials and random search draw exactly what the first run drew (checked with
    Optuna 5: a study resumed after 3 trials repeated trials 0-2 as 3-5), so a resumed sweep
    would train the same models again. A new study keeps ``seed`` itself, so one worker stays
    reproducible, and so does a resume from the same stored trials. Samplers that index a fixed
    sequence by the study's trials (QMC: ``reseed_on_resume: false``) keep theirs.
    Returns the new seed, or None when nothing changed.
    """
    seed = sampler_config.get("seed")
    # Trials that ran (an enqueued, WAITING trial drew nothing from the sampler yet).
    n = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    if not n or seed is None or not sampler_config.get("reseed_on_resume", True):
        return None
    study.sampler = make_sampler({**sampler_config, "seed": int(seed) + n})
    return int(seed) + n


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def open_study(
    study_config: Mapping[str, Any],
    storage_url: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    *,
    user_attrs: Mapping[str, Any],
    identity: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create the study with its identity, or load it to resume.

    A resume whose ``identity`` differs from the stored one is refused (``StudyMismatch``),
    except numeric ranges that only widen, which become the study's. A study without a stored
    identity (made before identities were kept, or killed right after its row was written)
    adopts the command's. ``config`` (the creating command's, redacted) is kept beside it:
    best.yaml is built from it, never from a later command.
    """
    from sqlalchemy.exc import SQLAlchemyError

    name = str(study_config["name"])
    direction = str(study_config["direction"])
    try:
        storage = open_storage(
            storage_url,
            heartbeat_interval=study_config.get("heartbeat_interval"),
            grace_period=study_config.get("grace_period"),
        )
        existing = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        existing = None
    except SQLAlchemyError as err:  # the server went away, or refused us, since the checks
        raise ConfigError("study.storage", f"cannot open {redact(storage_url)}: {first_line(err)}") from None
    if existing is None:
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction=direction
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker made it first
            existing = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        else:
            # A kill between creation and these writes leaves a study without them: the next run
            # adopts them from its config (below), so the identity is never missing for long.
            _store_identity(study, user_attrs, identity, config)
            return study
    old_direction = existing.direction.name.lower()
    old_metric = existing.user_attrs.get("metric")
    if old_direction != direction or (old_metric and old_metric != study_config["metric"]):
        raise ConfigError(
            "study.metric" if old_metric != study_config["metric"] else "study.direction",
            f"study '{name}' in {redact(storage_url)} optimizes {old_metric} ({old_direction}), "
            f"not {study_config['metric']} ({direction}); use another study.name",
        )
    if identity is None:
        return existing
    stored = existing.user_attrs.get(IDENTITY_ATTR)
    widened = check_resume(name, stored, identity)
    if not stored:
        log.info(
            f"study '{name}' has no stored identity (made before identities were kept, or its first "
            "run stopped right after creating it): adopted this command's settings as the study's"
        )
        _store_identity(existing, user_attrs, identity, config)
    elif widened:
        log.info(f"study '{name}': search space widened: " + "; ".join(widened))
        merged = dict(existing.user_attrs.get(CONFIG_ATTR) or config or {})
        merged["search_space"] = dict((config or {}).get("search_space") or {})
        _store_identity(existing, {}, identity, merged)
    return existing


def _store_identity(
    study: optuna.Study,
    user_attrs: Mapping[str, Any],
    identity: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
) -> None:
    for key, value in user_attrs.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    if config is not None:
        study.set_user_attr(CONFIG_ATTR, dict(config))
    if identity is not None:  # last: its presence says the others are stored
        study.set_user_attr(IDENTITY_ATTR, dict(identity))


def creation_config(study: optuna.Study) -> dict[str, Any] | None:
    """The config of the command that made the study (None for a study made before it was kept)."""
    config = study.user_attrs.get(CONFIG_ATTR)
    return dict(config) if isinstance(config, Mapping) else None


class Objective:
    """Samples a trial's hyperparameters, trains it, records everything as user attributes."""

    def __init__(
        self,
        space: SearchSpace,
        dataset: Dataset,
        training: Mapping[str, Any],
        *,
        metric: str,
        seed: int,
    ) -> None:
        self.space = space
        self.dataset = dataset
        self.training = training
        self.metric = metric
        self.seed = seed
        self.records: dict[int, TrialRecord] = {}
        # Set by the signal handler run_trials installs: KeyboardInterrupt (Ctrl-C) or Terminated.
        self.interrupted: KeyboardInterrupt | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        # Imported here: the engine module itself must stay importable without TensorFlow.
        from optuna_integration import KerasPruningCallback

        from tuning.model.fit import EpochLog
        from tuning.search.trial import objective_value, run_trial

        trial.set_user_attr(WORKER_ATTR, worker_id())  # lets a later run see this process died
        trial.set_user_attr(PIDNS_ATTR, pid_namespace())
        for inherited in ("fail_reason", "traceback", "interrupted"):  # copied by Optuna's retry
            if trial.user_attrs.get(inherited) is not None:
                trial.set_user_attr(inherited, None)
        try:
            hp = self.space.suggest(trial)
        except KeyboardInterrupt:  # Ctrl-C before training began: still retried on resume
            trial.set_user_attr("interrupted", True)
            raise
        seed = self.seed + trial.number
        record = TrialRecord(trial.number, "RUNNING", hp, seed, start_time=time.time())
        self.records[trial.number] = record
        epoch_log = EpochLog()
        try:
            trial.set_user_attr("seed", seed)
            # What this trial's value means, kept with it: a reader never compares two numbers
            # measured differently (the value is `metric` at the restored best weights).
            trial.set_user_attr("metric", self.metric)
            trial.set_user_attr("direction", trial.study.direction.name.lower())
            model, result = run_trial(
                hp,
                self.dataset,
                self.training,
                seed=seed,
                callbacks=[KerasPruningCallback(trial, self.metric)],
                epoch_log=epoch_log,
            )
            del model
            record.result = result
            if result.diverged_at is not None:
                raise TrialFailed(f"loss became NaN at epoch {result.diverged_at + 1}")
            value = objective_value(result, self.metric)
            if not math.isfinite(value):
                raise TrialFailed(f"{self.metric} is {value}")
            trial.set_user_attr("best_epoch", result.best_epoch + 1)
            trial.set_user_attr("epochs_trained", result.epochs_trained)
            trial.set_user_attr("early_stopped", result.early_stopped)
            trial.set_user_attr("n_params", result.n_params)
            trial.set_user_attr("fit_seconds", round(result.seconds, 3))  # the fit alone
            for name, v in {
                **_prefixed("train_", result.train),
                **_prefixed("val_", result.val),
                **result.gaps,
            }.items():
                trial.set_user_attr(name, v)
            record.value = value
            return value
        except optuna.TrialPruned:
            trial.set_user_attr("epochs_trained", len(epoch_log.history.get("loss", [])))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            record.error = "interrupted"
            raise
        except Exception as err:
            if self.interrupted:  # a Ctrl-C that TensorFlow's C++ layer turned into another error
                trial.set_user_attr("interrupted", True)
                record.error = "interrupted"
                raise self.interrupted from err
            record.error = f"{type(err).__name__}: {err}" if not isinstance(err, TrialFailed) else str(err)
            trial.set_user_attr("fail_reason", redact(record.error)[:2000])
            if not isinstance(err, TrialFailed):
                trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            if isinstance(err, TrialFailed) or is_trial_failure(err):
                raise TrialFailed(record.error) from err  # this trial's own failure: the study goes on
            raise  # a bug of ours or a lost store: the sweep stops (Optuna marks the trial FAIL)
        finally:
            record.history = epoch_log.history
            record.seconds = time.time() - record.start_time


def _prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in values.items()}


class _Finish:
    """Study callback: hands each finished trial's record to the observers; stops on repeated failures."""

    def __init__(self, objective: Objective, observers: Sequence[TrialObserver], max_failures: int) -> None:
        self.objective = objective
        self.observers = observers
        self.max_failures = max_failures
        self.failures_in_a_row = 0
        self.last_error: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        record = self.objective.records.pop(trial.number, None)
        if record is None:
            return
        record.state = trial.state.name
        record.value = trial.value
        if trial.duration is not None:  # one duration everywhere: the study's (report, MLflow, progress)
            record.seconds = trial.duration.total_seconds()
        if trial.state == TrialState.FAIL:
            record.error = (
                record.error or trial.user_attrs.get("fail_reason") or "objective returned no finite value"
            )
            self.failures_in_a_row += 1
            self.last_error = record.error
        else:
            self.failures_in_a_row = 0
        for observer in self.observers:
            observer.on_trial_end(study, record)
        if self.max_failures and self.failures_in_a_row >= self.max_failures:
            study.stop()


class TooManyFailures(StudyStopped):
    """Every recent trial failed: the configuration is likely broken, so the sweep stops."""


@contextmanager
def _noting_interrupts(objective: Objective) -> Iterator[None]:
    """Note Ctrl-C (SIGINT) and SIGTERM on the objective, then raise KeyboardInterrupt / Terminated.

    A Ctrl-C that lands while TensorFlow traces a function can come back from its C++ layer as a
    RuntimeError ("MISMATCH of original and normalized active exception types ... KeyboardInterrupt"):
    the note lets the objective still stop the sweep instead of failing the trial and going on.
    SIGTERM (kill, Docker, Kubernetes, SLURM) is handled the same way, so the running trial is
    marked for a retry and the MLflow runs are closed KILLED.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    handlers = {}

    def install(signum: int, error: type[KeyboardInterrupt]) -> None:
        previous = signal.getsignal(signum)
        handlers[signum] = previous

        def note(num: int, frame: Any) -> None:
            if previous is signal.SIG_IGN:
                return
            objective.interrupted = error()
            raise error()

        signal.signal(signum, note)

    install(signal.SIGINT, KeyboardInterrupt)
    install(signal.SIGTERM, Terminated)
    try:
        yield
    finally:
        for signum, previous in handlers.items():
            signal.signal(signum, previous)


def run_trials(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None,
    observers: Sequence[TrialObserver],
    max_consecutive_failures: int,
) -> None:
    """Run trials until ``n_trials`` are finished (COMPLETE or PRUNED) in the study.

    ``n_trials`` is a total: trials already in the study count, so re-running resumes. A trial's
    own failure (``is_trial_failure``) is recorded as FAIL with its reason and the study goes on;
    ``max_consecutive_failures`` of them in a row (0 = never) raise ``TooManyFailures``. Any other
    error (a bug of ours, in an observer too, or a lost store) marks the running trial FAIL and
    propagates: the sweep stops.
    """
    remaining = n_trials - finished_count(study)
    if remaining <= 0:
        return
    finish = _Finish(objective, observers, max_consecutive_failures)
    try:
        with _noting_interrupts(objective):
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                catch=(TrialFailed,),
                callbacks=[
                    finish,
                    optuna.study.MaxTrialsCallback(n_trials, states=FINISHED),
                ],
                gc_after_trial=False,
            )
    except KeyboardInterrupt:
        # Optuna has marked the running trial FAIL; tell observers so its run is closed too.
        for record in list(objective.records.values()):
            record.state = "FAIL"
            record.error = "interrupted"
            for observer in observers:
                observer.on_trial_end(study, record)
        raise
    if max_consecutive_failures and finish.failures_in_a_row >= max_consecutive_failures:
        raise TooManyFailures(
            f"{finish.failures_in_a_row} trials in a row failed; last error: {finish.last_error}"
        )
