"""KerasTuner's search loop around our trial runner (imports keras_tuner, hence TensorFlow).

KerasTuner's ``BaseTuner.search`` asks the oracle for a trial, runs ``run_trial`` and reports
the result; this tuner's ``run_trial`` trains the trial with ``TrialRunner`` and maps its
outcome onto KerasTuner's policy errors: a trial's own failure (``TrialFailed``) becomes
``FailedTrialError`` (a FAIL, the search goes on), anything else ``FatalError`` (the search
stops and the original error is raised again). ``study.n_trials`` counts finished trials, as
with Optuna; the loop stops before the next trial once there are enough, the timeout passed
or ``max_consecutive_failures`` trials in a row failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import keras_tuner as kt
from keras_tuner.engine.base_tuner import BaseTuner

from tuning.errors import ConfigError, TrialFailed
from tuning.redaction import redact
from tuning.results.keras_tuner_files import sidecar_path, write_json
from tuning.search.engines.base import FailureStreak, TrialObserver
from tuning.search.engines.keras_tuner_space import KerasTunerSuggester, declare, int_names
from tuning.search.record import TrialRecord
from tuning.search.runner import TrialRunner, noting_interrupts

if TYPE_CHECKING:
    from tuning.search.engines.keras_tuner import KerasTunerEngine

log = logging.getLogger("tuning.search.engines.keras_tuner")


class _Done(Exception):
    """Raised before the next trial: the search has what it needs (or must stop)."""


def make_oracle(engine: KerasTunerEngine) -> Any:
    """The algorithm's oracle, ranking on ``study.metric`` at the restored weights (the value
    every trial reports), over our space declared as KerasTuner hyperparameters."""
    options, space = engine.options, engine.space
    hp = kt.HyperParameters()
    declare(space, hp)  # type: ignore[arg-type]
    direction = "min" if engine.study_config["direction"] == "minimize" else "max"
    common = {
        "objective": kt.Objective(str(engine.study_config["metric"]), direction),
        "hyperparameters": hp,
        # Our space is declared whole: a new name would be a bug of ours. A custom model's
        # builder declares its own names as it builds (the first build, then any new branch).
        "allow_new_entries": space is not None and space.builder is not None,
        "seed": engine.seed,
        "max_retries_per_trial": 0,  # a failed trial is FAIL, as with Optuna
        # Our FailureStreak (study.max_consecutive_failures) decides; KerasTuner's own check would
        # raise a RuntimeError instead of our one-line stop (and 0 is not "never" there).
        "max_consecutive_failed_trials": sys.maxsize,
    }
    if options["algorithm"] == "hyperband":
        return kt.oracles.HyperbandOracle(
            max_epochs=options["max_epochs"],
            factor=options["factor"],
            hyperband_iterations=options["hyperband_iterations"],  # None: no limit (n_trials stops it)
            **common,
        )
    # max_trials=None: KerasTuner would count failed trials too; we stop at n_trials finished.
    if options["algorithm"] == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(
            max_trials=None,
            num_initial_points=options["num_initial_points"],
            alpha=options["alpha"],
            beta=options["beta"],
            **common,
        )
    return kt.oracles.RandomSearchOracle(max_trials=None, **common)


class RunnerTuner(BaseTuner):
    """A KerasTuner tuner whose trials are trained by our ``TrialRunner``."""

    def __init__(
        self,
        engine: KerasTunerEngine,
        runner: TrialRunner,
        *,
        n_trials: int,
        timeout: float | None,
        observers: Sequence[TrialObserver],
        streak: FailureStreak,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.n_trials = n_trials
        self.deadline = time.monotonic() + timeout if timeout else None
        self.observers = observers
        self.streak = streak
        self.fatal: BaseException | None = None
        self.attrs: dict[int, dict[str, Any]] = {}
        with contextlib.redirect_stdout(io.StringIO()) as said:  # "Reloading Tuner from ..."
            super().__init__(
                make_oracle(engine),
                directory=str(engine.folder.parent),
                project_name=engine.folder.name,
                overwrite=False,
            )
        for line in said.getvalue().splitlines():
            log.debug(line)
        if engine.space is not None and engine.space.builder is not None:
            self._declare_builder(engine.space)

    def _declare_builder(self, space: Any) -> None:
        """Build a custom model once so the oracle knows the builder's names before the first
        trial (what KerasTuner's own tuners do with a hypermodel): random and Bayesian search
        then sample them from trial 0 on. A resumed study already knows them."""
        from tuning.model.fit import fresh_session
        from tuning.search.space import Hyperparameters
        from tuning.search.trial import new_model

        hp = self.oracle.get_space()
        fresh_session()
        new_model(
            dataclasses.replace(Hyperparameters(), builder=space.builder),
            self.runner.dataset,
            suggester=KerasTunerSuggester(hp, space),
        )
        self.oracle.update_space(hp)
        fresh_session()

    def finished(self) -> int:
        return sum(t.status == "COMPLETED" for t in self.oracle.trials.values())

    def pre_create_trial(self) -> None:
        full_streak = bool(self.streak.limit) and self.streak.count >= self.streak.limit
        late = self.deadline is not None and time.monotonic() >= self.deadline
        if self.finished() >= self.n_trials or full_streak or late:
            raise _Done()

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        number = int(trial.trial_id)
        try:
            record = self._start(trial, number)
            space = self.engine.space
            builder = space is not None and space.builder is not None
            # A custom model's builder draws its values from KerasTuner's trial as it builds.
            suggester = KerasTunerSuggester(trial.hyperparameters, space) if space and builder else None
            try:
                value, attrs = self.runner.train(record, suggester=suggester)
            finally:
                if builder:  # a name the builder asked for the first time (a new branch)
                    self.oracle.update_space(trial.hyperparameters)
        except TrialFailed as err:
            self.attrs[number] = self.runner.failure_attrs(self.runner.records[number], err)
            # from None: KerasTuner keeps the traceback text in trial.json; ours stays in tuning.json.
            raise kt.errors.FailedTrialError(redact(str(err))) from None
        except KeyboardInterrupt as err:
            interrupted = self.runner.records.get(number)
            if interrupted is not None:  # KerasTuner runs it again on resume (see keras_tuner_files)
                attrs = {**self.runner.describe(interrupted), **self.runner.failure_attrs(interrupted, err)}
                self._write(trial, interrupted, attrs)
            raise
        except Exception as err:
            # A bug of ours or a lost store, wherever in the trial: KerasTuner would record any
            # other exception as a failed trial and go on, so it gets a FatalError, and the
            # search raises this error again.
            self.fatal = err
            raise kt.errors.FatalError(f"{type(err).__name__}: {redact(str(err))}") from None
        self.attrs[number] = {**self.runner.describe(record), **attrs}
        return {self.runner.metric: value}

    def _start(self, trial: Any, number: int) -> TrialRecord:
        """The trial's point as our Hyperparameters, its record started and its sidecar written."""
        values = trial.hyperparameters
        space = self.engine.space
        if space is None:
            raise RuntimeError("KerasTunerEngine.open() was not called")
        hp = space.suggest(KerasTunerSuggester(values, space))
        budget = values.values.get("tuner/epochs")
        if budget:
            # Hyperband's budget caps the epochs (and the record says so, so best.yaml is what
            # trained). A trial that continues an earlier one (`tuner/trial_id`) is trained again
            # from scratch for the whole budget rather than from the earlier trial's weights:
            # every trial then is a fresh model, early-stopped and measured at its restored best
            # weights like every other (KerasTuner's checkpoint holds the last epoch's weights,
            # not the restored best ones, and no optimizer state), at the cost of the earlier
            # trial's epochs trained again.
            hp = dataclasses.replace(hp, epochs=min(hp.epochs, int(budget)))
        record = self.runner.start(number, hp)
        self._write(trial, record, self.runner.describe(record))
        return record

    def on_trial_end(self, trial: Any) -> None:
        number = int(trial.trial_id)
        record = self.runner.records.pop(number)
        failed = trial.status != "COMPLETED"
        attrs = {**self.runner.describe(record), **self.attrs.pop(number, {})}
        if failed:
            record.error = record.error or attrs.get("fail_reason") or "no value reported"
            attrs.setdefault("fail_reason", redact(record.error))
        # Ours first: a kill between the two writes leaves trial.json RUNNING, so the trial runs again.
        self._write(trial, record, attrs)
        super().on_trial_end(trial)  # the oracle records the trial and saves its state
        record.state = "FAIL" if failed else "COMPLETE"
        record.value = None if failed else record.value
        self.streak.add(record.state, record.error)
        summary = self.engine.summary()
        for observer in self.observers:
            observer.on_trial_end(summary, record)

    def _write(self, trial: Any, record: TrialRecord, attrs: dict[str, Any]) -> None:
        metric = self.runner.metric
        write_json(
            sidecar_path(self.engine.folder, trial.trial_id),
            {
                "number": record.number,
                "params": record.hyperparameters.as_params(),
                "int_params": int_names(self.engine.space, record.hyperparameters),  # type: ignore[arg-type]
                "user_attrs": attrs,
                "start_time": record.start_time,
                "seconds": record.seconds or None,
                "intermediate_values": dict(enumerate(record.history.get(metric, []))),
                "hyperband": {
                    k: v for k, v in trial.hyperparameters.values.items() if k.startswith("tuner/")
                },
            },
        )


def _quiet_failures() -> None:
    """KerasTuner prints the traceback of every failed trial to stderr while its module-level
    ``DEBUG`` switch is on (the default; there is no public setter). Our progress line gives the
    reason and tuning.json keeps the traceback, so the terminal stays one line per trial."""
    config: Any = importlib.import_module("keras_tuner.src.config")
    if hasattr(config, "DEBUG"):
        config.DEBUG = False


@contextlib.contextmanager
def only_worker(engine: KerasTunerEngine) -> Iterator[None]:
    """Hold the study's lock file while trials run: KerasTuner's files are written by one
    process, and a second one on the same study would overwrite the first's oracle state."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, no check
        yield
        return
    path = engine.folder / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "study.name",
                f"'{engine.study_config['name']}' is being searched by another process; engine=keras_tuner "
                "runs one worker per study (engine=optuna runs many): wait for it, or use another study.name",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def search(
    engine: KerasTunerEngine,
    runner: TrialRunner,
    *,
    n_trials: int,
    timeout: float | None,
    observers: Sequence[TrialObserver],
    max_consecutive_failures: int,
) -> None:
    """Run KerasTuner's search until ``n_trials`` trials are finished (see the module's docstring)."""
    streak = FailureStreak(max_consecutive_failures)
    _quiet_failures()
    with only_worker(engine):
        tuner = RunnerTuner(
            engine, runner, n_trials=n_trials, timeout=timeout, observers=observers, streak=streak
        )
        try:
            with noting_interrupts(runner):
                tuner.search(verbose=0)
        except _Done:
            pass
        except kt.errors.FatalError:
            if tuner.fatal is None:  # KerasTuner's own fatal error
                raise
            raise tuner.fatal from None
    streak.check()
