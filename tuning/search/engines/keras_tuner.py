"""The KerasTuner engine: the public ``Oracle`` of KerasTuner's random search, Bayesian
optimization or Hyperband proposes the points (``create_trial``) and learns each one's value
(``update_trial``, ``end_trial``); the shared runner trains them; our sidecar files keep what
they measured. As in ``BaseTuner.search``, minus the Tuner: no subclass, no printing.

Imports neither keras_tuner nor TensorFlow at import: ``import keras_tuner`` loads TensorFlow
(~10 s), so the options are checked, the study file written and the study read without it;
KerasTuner is imported when trials run (``searching``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from tuning.config import Settings
from tuning.config.space import Hyperparameters, SearchSpace, Suggester
from tuning.errors import ConfigError
from tuning.payload import Payload
from tuning.search.engines.base import Engine, Outcome, Proposal, StudyRecord
from tuning.search.engines.keras_tuner_space import (
    OPTIONS,
    RESUMABLE,
    KerasTunerOptions,
    KerasTunerSuggester,
    check_supported,
    declare,
    hyperband_max_epochs,
    hyperband_short,
    int_names,
)
from tuning.study.identity import CONFIG_ATTR, IDENTITY_ATTR, StudyMismatch, check_resume
from tuning.study.keras_tuner_files import (
    check_project,
    only_worker,
    project_folder,
    read_project,
    read_study_file,
    sidecar_path,
    write_json,
)
from tuning.study.summary import StudySummary

log = logging.getLogger("tuning")

TUNER_ID = "tuner0"  # the one worker's name in the oracle (KerasTuner's default)


class KerasTunerEngine(Engine):
    """KerasTuner's oracles (random, Bayesian, Hyperband) behind ask/tell, one worker per study."""

    name: ClassVar[str] = "keras_tuner"
    storages: ClassVar[tuple[str, ...]] = ("files",)  # experiments/<study>/keras_tuner/

    def __init__(self, settings: Settings, storage_url: str) -> None:
        self.options = KerasTunerOptions.parse(settings.engine.options)
        check_supported(settings)
        if self.options.algorithm == "hyperband":
            cap = settings.training.max_epochs
            max_epochs = hyperband_max_epochs(self.options, settings.space, cap)
            self.options = dataclasses.replace(self.options, max_epochs=max_epochs)
        self.study_config = settings.study
        self.seed = settings.seed
        self.project = project_folder(settings.study_dir)
        self.space: SearchSpace | None = None
        self._attrs: dict[str, Any] = {}
        self.oracle: Any = None  # while searching

    @property
    def hyperband(self) -> bool:
        return self.options.algorithm == "hyperband"

    def describe(self) -> str:
        algorithm, options = self.options.algorithm, self.options.as_dict()
        shown = [k for k, (owner, *_) in OPTIONS.items() if owner == algorithm and options[k] is not None]
        return f"keras_tuner: {algorithm}" + "".join(f", {k} {options[k]}" for k in shown)

    def location(self) -> str:
        return str(self.project)

    def check_resume(self, identity: Payload) -> None:
        """Refuse a resume that changes the study (identity) or KerasTuner's algorithm and options,
        reading study.json only (before anything is written or TensorFlow imported); a damaged
        study file is refused here too, in one line."""
        check_project(self.project)
        stored = read_study_file(self.project)
        if stored is None:
            return
        name = str(self.study_config.name)
        attrs = stored.get("user_attrs") or {}
        widened = check_resume(name, attrs.get(IDENTITY_ATTR), identity)
        if widened:  # KerasTuner reloads the space it saved: a wider range would not be searched
            keeps = "KerasTuner keeps the search space it started with; engine=optuna can widen"
            raise StudyMismatch(name, [f"{line} ({keeps})" for line in widened])
        old = {k: v for k, v in (stored.get("options") or {}).items() if k not in RESUMABLE}
        new = {k: v for k, v in self.options.as_dict().items() if k not in RESUMABLE}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            key = changed[0]
            raise ConfigError(
                f"engine.{key}",
                f"study '{name}' was searched with {key}={old.get(key)}, this command has {new.get(key)}; "
                f"KerasTuner keeps its algorithm and options for a whole study: use {key}={old.get(key)}, "
                "or start a new study with study.name=NEW",
            )

    def open(self, space: SearchSpace, record: StudyRecord) -> list[str]:
        self.space = space
        self.check_resume(record.identity)
        n_trials = self.study_config.n_trials  # never None here: budgets are refused for this engine
        short = hyperband_short(self.options, n_trials) if self.hyperband and n_trials else None
        if short:  # before any trial: a sweep this short never promotes a trial to max_epochs
            log.warning(short)
        stored = read_study_file(self.project)
        if stored is not None:
            direction, metric = stored.get("direction"), (stored.get("user_attrs") or {}).get("metric")
            if direction != self.study_config.direction or metric != self.study_config.metric:
                raise ConfigError(
                    "study.metric",
                    f"study '{stored.get('name')}' in {self.project} optimizes {metric} ({direction}), not "
                    f"{self.study_config.metric} ({self.study_config.direction}); use another study.name",
                )
            self._attrs = dict(stored.get("user_attrs") or {})
            return []
        self._attrs = {
            **record.user_attrs,
            CONFIG_ATTR: dict(record.config),
            IDENTITY_ATTR: dict(record.identity),
        }
        study = {"name": str(self.study_config.name), "direction": str(self.study_config.direction)}
        write_json(
            self.project / "study.json",
            {**study, "engine": self.name, "options": self.options.as_dict(), "user_attrs": self._attrs},
        )
        return []

    @contextmanager
    def searching(self, build: Callable[[str, Suggester], None]) -> Iterator[None]:
        """Hold the study's lock and its oracle, reloaded from its files on a resume."""
        with only_worker(self.project, str(self.study_config.name)):
            self.oracle = open_oracle(self)
            if self.space is not None and self.space.builder is not None:
                # One build declares the builder's names, as KerasTuner's tuners do with a
                # hypermodel: random and Bayesian search then sample them from trial 0 on.
                hp = self.oracle.get_space()
                build(self.space.builder, KerasTunerSuggester(hp, self.space))
                self.oracle.update_space(hp)
            try:
                yield
            finally:
                self.oracle = None

    def ask(self) -> Proposal | None:
        """``oracle.create_trial``: a trial a stopped run left RUNNING first, then a new point."""
        from keras_tuner.engine.trial import TrialStatus

        if self.oracle is None or self.space is None:
            raise RuntimeError("KerasTunerEngine.ask() outside searching()")
        trial = self.oracle.create_trial(TUNER_ID)
        if trial.status == TrialStatus.STOPPED:  # e.g. Hyperband's last iteration, a space tried out
            return None
        if trial.status != TrialStatus.RUNNING:  # IDLE: waits for another worker's trial; there is none
            raise RuntimeError(f"KerasTuner's oracle answered {trial.status} to its only worker")
        values = trial.hyperparameters
        hp = self.space.suggest(KerasTunerSuggester(values, self.space))
        budget = values.values.get("tuner/epochs")
        if budget:
            # Hyperband's budget caps the epochs (and the record says so, so best.yaml is what
            # trained). A trial that continues an earlier one (`tuner/trial_id`) is trained again
            # from scratch for the whole budget rather than from the earlier trial's weights:
            # every trial then is a fresh model, early-stopped and measured at its restored best
            # weights like every other, at the cost of the earlier trial's epochs trained again.
            hp = dataclasses.replace(hp, epochs=min(hp.epochs, int(budget)))
        # A custom model's builder draws its values from KerasTuner's trial as it builds.
        suggester = KerasTunerSuggester(values, self.space) if self.space.builder is not None else None
        return Proposal(int(trial.trial_id), hp, suggester=suggester, trial=trial)

    def begin(self, proposal: Proposal, attrs: Payload) -> None:
        import time

        self._write(proposal, proposal.hyperparameters, attrs, start_time=time.time())

    def tell(self, proposal: Proposal, outcome: Outcome) -> Outcome:
        """``update_trial`` with the trial's value, then ``end_trial``. KerasTuner's oracles rank a
        trial by its best reported value: it gets one report, the value at the restored weights
        (or the mean over folds), so KerasTuner and our records rank on the same number. A trial
        the sweep stopped in stays RUNNING: KerasTuner's oracle runs it again on resume."""
        from keras_tuner.engine.trial import TrialStatus

        trial, attrs = proposal.trial, {**outcome.attrs, **self._budget(proposal)}
        if self.space is not None and self.space.builder is not None:  # a name asked the first time
            self.oracle.update_space(trial.hyperparameters)
        if outcome.stopped:
            self._write(proposal, outcome.hyperparameters, attrs, outcome)
            return outcome
        if outcome.state == "COMPLETE" and outcome.value is not None:
            self.oracle.update_trial(trial.trial_id, {str(self.study_config.metric): outcome.value})
            trial.status = TrialStatus.COMPLETED
        else:  # FAIL (KerasTuner prunes nothing)
            attrs["fail_reason"] = attrs.get("fail_reason") or "no value reported"
            trial.status, trial.message = TrialStatus.FAILED, attrs["fail_reason"]
        # Ours first: a kill between the two writes leaves trial.json RUNNING, so the trial runs again.
        self._write(proposal, outcome.hyperparameters, attrs, outcome)
        self.oracle.end_trial(trial)
        self.oracle.save()  # as BaseTuner.on_trial_end: end_trial saved before it let go of the trial
        done = trial.status == TrialStatus.COMPLETED
        return dataclasses.replace(
            outcome, state="COMPLETE" if done else "FAIL", value=outcome.value if done else None, attrs=attrs
        )

    def _budget(self, proposal: Proposal) -> dict[str, Any]:
        """Hyperband: the epochs the trial was given (``tuner/epochs``), the largest budget, and the
        epochs it sampled before the budget capped them: best.yaml's export reads them."""
        values = proposal.trial.hyperparameters.values
        if not self.hyperband or not values.get("tuner/epochs"):
            return {}
        fixed = self.space.fixed.get("epochs") if self.space is not None else None
        sampled = values.get("epochs", fixed)  # searched, or fixed by the config
        budget = {
            "hyperband_epochs": int(values["tuner/epochs"]),
            "hyperband_max_epochs": int(self.options.max_epochs or 0),
        }
        return budget if sampled is None else {**budget, "sampled_epochs": int(sampled)}

    def _write(
        self,
        proposal: Proposal,
        hp: Hyperparameters | None,
        attrs: Payload,
        outcome: Outcome | None = None,
        start_time: float | None = None,
    ) -> None:
        """The trial's sidecar: what KerasTuner's trial.json has no place for."""
        hp = hp or proposal.hyperparameters
        values = proposal.trial.hyperparameters.values
        write_json(
            sidecar_path(self.project, proposal.trial.trial_id),
            {
                "number": proposal.number,
                "params": hp.as_params(),
                "int_params": int_names(self.space, hp),  # type: ignore[arg-type]
                "user_attrs": dict(attrs),
                "start_time": outcome.start_time if outcome is not None else start_time,
                "seconds": outcome.seconds if outcome is not None else None,
                "intermediate_values": dict(outcome.history) if outcome is not None else {},
                "hyperband": {k: v for k, v in values.items() if k.startswith("tuner/")},
            },
        )

    def summary(self) -> StudySummary:
        summary = read_project(self.project, str(self.study_config.name))
        if summary is None:  # not opened yet: an empty study
            return StudySummary(
                str(self.study_config.name),
                str(self.study_config.direction),
                dict(self._attrs),
                [],
                self.name,
            )
        return summary


def open_oracle(engine: KerasTunerEngine) -> Any:
    """The algorithm's oracle over our space, ranking on ``study.metric``, its project folder set
    and, on a resume, its state and trials read back from it."""
    import keras_tuner as kt
    from keras_tuner.engine.base_tuner import BaseTuner

    hp = kt.HyperParameters()
    declare(engine.space, hp)  # type: ignore[arg-type]
    direction = "min" if engine.study_config.direction == "minimize" else "max"
    common = {
        "objective": kt.Objective(str(engine.study_config.metric), direction),
        "hyperparameters": hp,
        # Our space is declared whole: a new name would be a bug of ours. A custom model's
        # builder declares its own names as it builds (the first build, then any new branch).
        "allow_new_entries": engine.space is not None and engine.space.builder is not None,
        "seed": engine.seed,
        "max_retries_per_trial": 0,  # a failed trial is FAIL, as with Optuna
        # The runner's failure streak (study.max_consecutive_failures) decides; KerasTuner's own
        # check would raise a RuntimeError instead of our one-line stop (and 0 is not "never" there).
        "max_consecutive_failed_trials": sys.maxsize,
    }
    options = engine.options
    if options.algorithm == "hyperband":
        oracle = kt.oracles.HyperbandOracle(
            max_epochs=options.max_epochs,
            factor=options.factor,
            hyperband_iterations=options.hyperband_iterations,  # None: no limit (n_trials stops it)
            **common,
        )
    elif options.algorithm == "bayesian":  # max_trials=None: the runner counts finished trials
        oracle = kt.oracles.BayesianOptimizationOracle(
            max_trials=None,
            num_initial_points=options.num_initial_points,
            alpha=options.alpha,
            beta=options.beta,
            **common,
        )
    else:
        oracle = kt.oracles.RandomSearchOracle(max_trials=None, **common)
    oracle.verbose = 0  # our progress line reports each trial
    # A Tuner's constructor is KerasTuner's public way to give an oracle its project folder (it
    # also reloads the study of an earlier version of this engine, which saved a tuner0.json).
    tuner = BaseTuner(oracle, directory=str(engine.project.parent), project_name=engine.project.name)
    if (engine.project / "oracle.json").is_file() and not (engine.project / f"{TUNER_ID}.json").is_file():
        tuner.oracle.reload()
    return tuner.oracle
