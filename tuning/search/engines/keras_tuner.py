"""The KerasTuner engine: KerasTuner's random search, Bayesian optimization or Hyperband choose
the points, our ``TrialRunner`` trains them, our files keep what they measured.

Imports neither keras_tuner nor TensorFlow: ``import keras_tuner`` loads TensorFlow (~10 s), so
the options are checked, the study file written and the study read without it; KerasTuner is
imported when trials run (``keras_tuner_search``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tuning.errors import ConfigError
from tuning.redaction import redact
from tuning.results.keras_tuner_files import project_folder, read_project, read_study_file, write_json
from tuning.results.summary import StudySummary
from tuning.search.engines.base import Engine, TrialObserver
from tuning.search.identity import CONFIG_ATTR, IDENTITY_ATTR, StudyMismatch, check_resume
from tuning.search.runner import TrialRunner
from tuning.search.space import SearchSpace
from tuning.search.space_config import parse_space

log = logging.getLogger("tuning.search.engines.keras_tuner")

ALGORITHMS = ("bayesian", "hyperband", "random")
# option -> (algorithm it belongs to, lowest allowed value, integer?, lowest value excluded?)
OPTIONS: dict[str, tuple[str, float, bool, bool]] = {
    "max_epochs": ("hyperband", 1, True, False),
    "factor": ("hyperband", 2, True, False),
    "hyperband_iterations": ("hyperband", 1, True, False),
    "num_initial_points": ("bayesian", 1, True, False),
    "alpha": ("bayesian", 0.0, False, True),
    "beta": ("bayesian", 0.0, False, False),
}
# KerasTuner's documented defaults for options that may not be null.
DEFAULTS = {"factor": 3, "alpha": 1e-4, "beta": 2.6}
# An option that may change when the study resumes: it is not part of KerasTuner's saved state.
RESUMABLE = ("hyperband_iterations",)
DEFAULT_PRUNERS = ("successive_halving", "none")  # the config's default (ignored here) and "none"
DEFAULT_SAMPLER = "tpe"


def check_options(engine: Mapping[str, Any]) -> dict[str, Any]:
    """The engine group's options, checked; one ConfigError line naming the key otherwise."""
    allowed = ("name", "algorithm", *OPTIONS)
    unknown = sorted(set(engine) - set(allowed))
    if unknown:
        raise ConfigError(
            f"engine.{unknown[0]}", f"not an option of engine=keras_tuner; allowed: {', '.join(allowed)}"
        )
    algorithm = engine.get("algorithm", "bayesian")
    if algorithm not in ALGORITHMS:
        raise ConfigError("engine.algorithm", f"{algorithm!r} is not one of: {', '.join(ALGORITHMS)}")
    options: dict[str, Any] = {"algorithm": algorithm}
    for key, (_, low, integer, above) in OPTIONS.items():
        value = engine.get(key, DEFAULTS.get(key))
        if value is None and key not in DEFAULTS:
            options[key] = None
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (integer and float(value) != int(value)) or value < low or (above and value == low):
            kind = "an integer" if integer else "a number"
            bound = f"{'>' if above else '>='} {int(low) if integer else low}"
            null = "" if key in DEFAULTS else " or null"
            raise ConfigError(f"engine.{key}", f"{value!r}; must be {kind} {bound}{null}")
        options[key] = int(value) if integer else float(value)
    return options


def check_supported(settings: Mapping[str, Any]) -> None:
    """Refuse, in one line, what KerasTuner cannot do (README, "Engines")."""
    study = settings["study"]
    if study.get("storage"):
        raise ConfigError(
            "study.storage",
            f"{redact(str(study['storage']))!r}: engine=keras_tuner keeps its study in files under "
            "experiments/<study>/keras_tuner/ (one worker, no database); leave study.storage=null, or use "
            "engine=optuna for a shared storage and several workers",
        )
    pruner = str((settings.get("pruner") or {}).get("name", "none"))
    if pruner not in DEFAULT_PRUNERS:
        raise ConfigError(
            "pruner",
            f"'{pruner}': KerasTuner has no pruners; engine.algorithm=hyperband is its way to stop poor "
            "trials early (allowed here: the default, or none), or use engine=optuna",
        )
    sampler = str((settings.get("sampler") or {}).get("name", DEFAULT_SAMPLER))
    if sampler != DEFAULT_SAMPLER:
        raise ConfigError(
            "sampler",
            f"'{sampler}' is an Optuna sampler; with engine=keras_tuner choose "
            f"engine.algorithm={'|'.join(ALGORITHMS)}",
        )


def hyperband_max_epochs(options: Mapping[str, Any], settings: Mapping[str, Any]) -> int:
    """Hyperband's largest budget: ``engine.max_epochs``, else the space's largest ``epochs``
    (capped by ``training.max_epochs``, which caps every trial anyway)."""
    if options.get("max_epochs"):
        return int(options["max_epochs"])
    space = parse_space(settings["search_space"])
    dim = space.dimensions.get("epochs")
    epochs = int(dim.high) if dim is not None else int(space.fixed.get("epochs", 50))  # type: ignore[arg-type]
    cap = settings["training"].get("max_epochs")
    return min(epochs, int(cap)) if cap else epochs


class KerasTunerEngine(Engine):
    """KerasTuner's oracles (random, Bayesian, Hyperband) on our trial runner, one worker per study."""

    name: ClassVar[str] = "keras_tuner"

    def __init__(self, settings: Mapping[str, Any], storage_url: str) -> None:
        self.options = check_options(settings.get("engine") or {})
        check_supported(settings)
        if self.options["algorithm"] == "hyperband":
            self.options["max_epochs"] = hyperband_max_epochs(self.options, settings)
        self.study_config = dict(settings["study"])
        self.seed = int(settings["seed"])
        self.project = project_folder(settings["paths"]["study_dir"])
        self.space: SearchSpace | None = None
        self._attrs: dict[str, Any] = {}

    def describe(self) -> str:
        algorithm = self.options["algorithm"]
        shown = [
            k for k, (owner, *_) in OPTIONS.items() if owner == algorithm and self.options.get(k) is not None
        ]
        return f"keras_tuner: {algorithm}" + "".join(f", {k} {self.options[k]}" for k in shown)

    def location(self) -> str:
        return str(self.project)

    def check_resume(self, identity: Mapping[str, Any]) -> None:
        """Refuse a resume that changes the study (identity) or KerasTuner's algorithm and options,
        reading study.json only (before anything is written or TensorFlow imported)."""
        stored = read_study_file(self.project)
        if stored is None:
            return
        name = str(self.study_config["name"])
        attrs = stored.get("user_attrs") or {}
        widened = check_resume(name, attrs.get(IDENTITY_ATTR), identity)
        if widened:  # KerasTuner reloads the space it saved: a wider range would not be searched
            raise StudyMismatch(
                name,
                [
                    f"{line} (KerasTuner keeps the search space it started with; engine=optuna can widen)"
                    for line in widened
                ],
            )
        old = {k: v for k, v in (stored.get("options") or {}).items() if k not in RESUMABLE}
        new = {k: v for k, v in self.options.items() if k not in RESUMABLE}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            key = changed[0]
            raise ConfigError(
                f"engine.{key}",
                f"study '{name}' was searched with {key}={old.get(key)}, this command has {new.get(key)}; "
                f"KerasTuner keeps its algorithm and options for a whole study: use {key}={old.get(key)}, "
                "or start a new study with study.name=NEW",
            )

    def open(
        self,
        space: SearchSpace,
        *,
        user_attrs: Mapping[str, Any],
        identity: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> list[str]:
        self.space = space
        self.check_resume(identity)
        stored = read_study_file(self.project)
        if stored is not None:
            direction, metric = stored.get("direction"), (stored.get("user_attrs") or {}).get("metric")
            if direction != self.study_config["direction"] or metric != self.study_config["metric"]:
                raise ConfigError(
                    "study.metric",
                    f"study '{stored.get('name')}' in {self.project} optimizes {metric} ({direction}), not "
                    f"{self.study_config['metric']} ({self.study_config['direction']}); use another study.name",
                )
            self._attrs = dict(stored.get("user_attrs") or {})
            return []
        self._attrs = {**user_attrs, CONFIG_ATTR: dict(config), IDENTITY_ATTR: dict(identity)}
        write_json(
            self.project / "study.json",
            {
                "name": str(self.study_config["name"]),
                "direction": str(self.study_config["direction"]),
                "engine": self.name,
                "options": self.options,
                "user_attrs": self._attrs,
            },
        )
        return []

    def run(
        self,
        runner: TrialRunner,
        *,
        n_trials: int,
        timeout: float | None,
        observers: Sequence[TrialObserver],
        max_consecutive_failures: int,
    ) -> None:
        if self.space is None:
            raise RuntimeError("KerasTunerEngine.open() was not called")
        from tuning.search.engines.keras_tuner_search import search

        search(
            self,
            runner,
            n_trials=n_trials,
            timeout=timeout,
            observers=observers,
            max_consecutive_failures=max_consecutive_failures,
        )

    def summary(self) -> StudySummary:
        summary = read_project(self.project, str(self.study_config["name"]))
        if summary is None:  # not opened yet: an empty study
            return StudySummary(
                str(self.study_config["name"]),
                str(self.study_config["direction"]),
                dict(self._attrs),
                [],
                self.name,
            )
        return summary

    @property
    def folder(self) -> Path:
        return self.project
