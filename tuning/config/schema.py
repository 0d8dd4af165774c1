"""The sweep's settings as frozen, typed parts, each checked once as it is read from the composed config.

Why dataclasses filled from the composed config, not Hydra structured configs: several groups
are open by design (a sampler's or pruner's keyword arguments go to Optuna as they are, a data
source has its own options, a best.yaml adds keys), and Hydra's schema errors would have to be
translated back into our one-line ``<key>: <value> is not one of: …`` form. Here Hydra composes,
and each part's ``parse`` checks its own keys and gives that line. The defaults below are those
of ``conf/``: ``tests/config/test_schema.py`` composes ``conf/`` and compares, so they cannot drift.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuning.errors import ConfigError
from tuning.payload import Payload, RawConfig

DIRECTIONS = ("auto", "minimize", "maximize")
# tracking.plotlyjs: "none" draws Optuna's plots as PNGs only; "embed" adds interactive HTML
# holding plotly.js itself (~4 MB a plot). No CDN option: an HTML plot that loads plotly.js from
# the internet is blank on a cluster or a laptop offline.
PLOTLYJS = ("none", "embed")
# stop: none runs to study.n_trials; converged asks Optuna's terminator after every trial.
STOP_MODES = ("none", "converged")
# stop.evaluator: how the terminator judges the room left (regret_bound fits a Gaussian
# process: Optuna's GP code needs PyTorch, which the project does not install).
STOP_EVALUATORS = ("stagnation", "regret_bound")


def check_int(key: str, value: Any, low: int, allow_none: bool = False) -> None:
    """An integer >= ``low`` (or null with ``allow_none``), else one ``ConfigError`` line."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        none = " or null" if allow_none else ""
        raise ConfigError(key, f"{value!r}; must be an integer >= {low}{none}")


def check_bool(key: str, value: Any) -> None:
    """true or false, else one ``ConfigError`` line."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"{value!r}; must be true or false")


def check_choice(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    """One of ``allowed``, else one ``ConfigError`` line listing them."""
    if value not in allowed:
        raise ConfigError(key, f"{value!r}; allowed: {', '.join(allowed)}")
    return str(value)


def _number(key: str, value: Any) -> float:
    """A finite number, else one ``ConfigError`` line."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(key, f"{value!r}; must be a number")
    return float(value)


def _section(raw: RawConfig, key: str) -> RawConfig:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"{value!r} is not a mapping of settings")
    return value


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of all rows held out for validation and test; train gets the rest."""

    val: float = 0.2
    test: float = 0.2

    @classmethod
    def parse(cls, raw: RawConfig) -> SplitConfig:
        for part in ("val", "test"):
            value = raw.get(part)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
                raise ConfigError(f"split.{part}", f"{value!r}; must be a fraction in (0, 1)")
        if raw["val"] + raw["test"] >= 1:
            raise ConfigError(
                "split.test",
                f"split.val + split.test = {raw['val'] + raw['test']:g}; must be below 1 to leave rows to train on",
            )
        return cls(float(raw["val"]), float(raw["test"]))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Keras ``EarlyStopping``: the monitored metric (``auto``: the study's), patience, min_delta."""

    monitor: str = "auto"
    patience: int | None = 10
    min_delta: float = 0.0

    @classmethod
    def parse(cls, raw: RawConfig, metrics: list[str]) -> EarlyStoppingConfig:
        check_int("training.early_stopping.patience", raw.get("patience"), 0, allow_none=True)
        monitor = check_choice("training.early_stopping.monitor", raw.get("monitor"), metrics)
        delta = _number("training.early_stopping.min_delta", raw.get("min_delta", cls.min_delta))
        return cls(monitor, raw.get("patience"), delta)


@dataclass(frozen=True)
class TrainingConfig:
    """How every trial (and the final model) trains, apart from what the search space samples."""

    max_epochs: int | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    steps_per_execution: int = 32
    deterministic: bool = True
    graph_optimizations: bool = False
    # Compiled MLPs kept, one per structure, reused by its trials: no tracing per trial, the
    # same values (model/reuse.py); ~40 MB each. 0: a fresh model per trial.
    kept_models: int = 0
    threads: int | None = None
    # Each trial's model, optimizer and early-stopping state at every epoch's end, so a resumed
    # sweep continues an interrupted trial from its last epoch (search/checkpoints.py).
    checkpoints: bool = True
    # Rehearsal (tuning/search/rehearsal.py): each epoch sleeps this long and reports a value
    # computed from the trial's params; no model, no TensorFlow. None: real training.
    simulate_epoch_seconds: float | None = None

    @classmethod
    def parse(cls, raw: RawConfig, metrics: list[str]) -> TrainingConfig:
        check_int("training.max_epochs", raw.get("max_epochs"), 1, allow_none=True)
        simulate = raw.get("simulate_epoch_seconds")
        if simulate is not None and (
            not isinstance(simulate, int | float) or isinstance(simulate, bool) or not simulate >= 0
        ):
            raise ConfigError(
                "training.simulate_epoch_seconds", f"{simulate!r}; must be a number of seconds >= 0 or null"
            )
        check_int("training.steps_per_execution", raw.get("steps_per_execution", cls.steps_per_execution), 1)
        check_int("training.threads", raw.get("threads"), 1, allow_none=True)
        check_int("training.kept_models", raw.get("kept_models", cls.kept_models), 0)
        for flag in ("deterministic", "graph_optimizations", "checkpoints"):
            check_bool(f"training.{flag}", raw.get(flag, getattr(cls, flag)))
        return cls(
            max_epochs=raw.get("max_epochs"),
            early_stopping=EarlyStoppingConfig.parse(_section(raw, "early_stopping"), metrics),
            steps_per_execution=int(raw.get("steps_per_execution", cls.steps_per_execution)),
            deterministic=bool(raw.get("deterministic", cls.deterministic)),
            graph_optimizations=bool(raw.get("graph_optimizations", cls.graph_optimizations)),
            kept_models=int(raw.get("kept_models", cls.kept_models)),
            checkpoints=bool(raw.get("checkpoints", cls.checkpoints)),
            threads=raw.get("threads"),
            simulate_epoch_seconds=None if simulate is None else float(simulate),
        )


@dataclass(frozen=True)
class StudyConfig:
    """The study: its name and storage, how many trials, what ranks them, when to stop."""

    name: str
    n_trials: int | None = 50  # None: only with a budget (BudgetConfig)
    metric: str = "auto"
    direction: str = "auto"
    storage: str | None = None
    timeout: float | None = None
    heartbeat_interval: int | None = 30
    grace_period: int | None = 90
    max_consecutive_failures: int = 5
    top: int = 5

    @classmethod
    def parse(cls, raw: RawConfig, metrics: list[str]) -> StudyConfig:
        check_int("study.n_trials", raw.get("n_trials"), 1, allow_none=True)  # null: a budget decides
        direction = check_choice("study.direction", raw.get("direction"), DIRECTIONS)
        metric = check_choice("study.metric", raw.get("metric"), metrics)
        timeout = raw.get("timeout")
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise ConfigError("study.timeout", f"{timeout!r}; must be a positive number of seconds or null")
        for key in ("heartbeat_interval", "grace_period"):  # null: no heartbeat (RDB storages only)
            check_int(f"study.{key}", raw.get(key), 1, allow_none=True)
        check_int("study.top", raw.get("top", cls.top), 1)
        check_int("study.max_consecutive_failures", raw.get("max_consecutive_failures", 0), 0)
        if not re.fullmatch(r"[\w.-]+", str(raw.get("name"))):
            raise ConfigError("study.name", f"{raw.get('name')!r}; use letters, digits, '.', '_' or '-'")
        storage = raw.get("storage")
        return cls(
            name=str(raw["name"]),
            n_trials=None if raw.get("n_trials") is None else int(raw["n_trials"]),
            metric=metric,
            direction=direction,
            storage=None if storage in (None, "") else str(storage),
            timeout=None if timeout is None else float(timeout),
            heartbeat_interval=raw.get("heartbeat_interval"),
            grace_period=raw.get("grace_period"),
            max_consecutive_failures=int(raw.get("max_consecutive_failures", 0)),
            top=int(raw.get("top", cls.top)),
        )


@dataclass(frozen=True)
class StopConfig:
    """``stop``: ``none`` (run to ``study.n_trials``) or ``converged``: end the search when Optuna's
    terminator says more trials are unlikely to beat the best, once ``min_trials`` completed.
    ``patience``: completed trials in a row without a new best (``evaluator: stagnation``)."""

    name: str = "none"
    evaluator: str = "stagnation"
    patience: int = 10
    min_trials: int = 20

    @property
    def converged(self) -> bool:
        """True with ``stop=converged``."""
        return self.name == "converged"

    @classmethod
    def parse(cls, raw: RawConfig) -> StopConfig:
        name = check_choice("stop", raw.get("name", cls.name), STOP_MODES)
        evaluator = check_choice("stop.evaluator", raw.get("evaluator", cls.evaluator), STOP_EVALUATORS)
        for key in ("patience", "min_trials"):
            check_int(f"stop.{key}", raw.get(key, getattr(cls, key)), 1)
        if name == "converged" and evaluator == "regret_bound" and importlib.util.find_spec("torch") is None:
            raise ConfigError(
                "stop.evaluator",
                "'regret_bound' fits a Gaussian process with Optuna's GP code, which needs PyTorch "
                "(not installed: pip install -e '.[gp]'); allowed without it: stagnation",
            )
        return cls(
            name=name,
            evaluator=evaluator,
            patience=int(raw.get("patience", cls.patience)),
            min_trials=int(raw.get("min_trials", cls.min_trials)),
        )


@dataclass(frozen=True)
class BudgetConfig:
    """``budget``: what the whole study may spend, counted over every worker and every resume
    from the study's trials: ``epochs`` trained, ``minutes`` of training (trial durations
    summed). None: no limit. When spent, running trials end at their next epoch (pruned) and no
    trial starts; ``study.n_trials`` may then be null."""

    epochs: int | None = None
    minutes: float | None = None

    @property
    def limited(self) -> bool:
        """True when either budget is set."""
        return self.epochs is not None or self.minutes is not None

    @classmethod
    def parse(cls, raw: RawConfig) -> BudgetConfig:
        check_int("budget.epochs", raw.get("epochs"), 1, allow_none=True)
        minutes = raw.get("minutes")
        if minutes is not None and (_number("budget.minutes", minutes) <= 0):
            raise ConfigError("budget.minutes", f"{minutes!r}; must be a positive number of minutes or null")
        epochs = raw.get("epochs")
        return cls(None if epochs is None else int(epochs), None if minutes is None else float(minutes))


@dataclass(frozen=True)
class WarmStartConfig:
    """``warm_start``: seed a new study from an earlier one (``from``: its study name, or a
    best.yaml path; None: start cold). ``top``: configurations queued from a study on other
    data (None: ``study.top``)."""

    source: str | None = None
    top: int | None = None

    @classmethod
    def parse(cls, raw: RawConfig) -> WarmStartConfig:
        source = raw.get("from")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise ConfigError(
                "warm_start.from", f"{source!r}; must be a study name, a best.yaml path, or null"
            )
        check_int("warm_start.top", raw.get("top"), 1, allow_none=True)
        top = raw.get("top")
        return cls(None if source is None else source.strip(), None if top is None else int(top))


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: on or off, where, which experiment, and what the parent run draws."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    learning_curves: int = 4
    plotlyjs: str = "none"

    @classmethod
    def parse(cls, raw: RawConfig) -> TrackingConfig:
        plotlyjs = check_choice("tracking.plotlyjs", raw.get("plotlyjs", cls.plotlyjs), PLOTLYJS)
        check_int("tracking.learning_curves", raw.get("learning_curves", cls.learning_curves), 0)
        uri, experiment = raw.get("uri"), raw.get("experiment")
        if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
            raise ConfigError(
                "tracking.experiment",
                f"{experiment!r}; must be an experiment name, or null for the study's name",
            )
        check_bool("tracking.enabled", raw.get("enabled", cls.enabled))
        return cls(
            enabled=bool(raw.get("enabled", cls.enabled)),
            uri=None if uri in (None, "") else str(uri),
            experiment=None if experiment in (None, "") else str(experiment),
            learning_curves=int(raw.get("learning_curves", cls.learning_curves)),
            plotlyjs=plotlyjs,
        )


@dataclass(frozen=True)
class FinalConfig:
    """`tuning train`: replay the best trial (the default) or refit on train + validation, and
    for how many epochs (None: from the trial). The default follows experiments/benchmarks/refit.py:
    the refit was worse than the replay beyond the seeds' spread on one table of four."""

    refit: bool = False
    epochs: int | None = None

    @classmethod
    def parse(cls, raw: RawConfig) -> FinalConfig:
        check_bool("final.refit", raw.get("refit", cls.refit))
        check_int("final.epochs", raw.get("epochs"), 1, allow_none=True)
        return cls(bool(raw.get("refit", cls.refit)), raw.get("epochs"))


@dataclass(frozen=True)
class Component:
    """A chosen implementation (engine, sampler, pruner, data source): its name and its options,
    which the component itself checks (an engine in its constructor, Optuna for a sampler)."""

    name: str
    options: Payload = field(default_factory=dict)

    @classmethod
    def parse(cls, key: str, raw: RawConfig, default: str) -> Component:
        name = raw.get("name", default)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.name", f"{name!r}; must be a name")
        return cls(name, {k: v for k, v in raw.items() if k != "name"})
