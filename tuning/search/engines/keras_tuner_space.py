"""Our config as KerasTuner's: the engine group's options, checked, and our search space as
KerasTuner hyperparameters (a ``Suggester`` over KerasTuner's ``hp``). No keras_tuner import.

``SearchSpace.suggest`` asks for each value by name; this adapter answers with KerasTuner's
``hp.Int`` / ``hp.Float`` / ``hp.Choice``, which declare the dimension the first time and return
the oracle's value after. ``units_i`` (i >= 1) exists only when ``n_layers > i``, so it is
declared inside ``hp.conditional_scope("n_layers", [...])``: KerasTuner then neither samples
nor stores a width for a layer the model does not have. Takes the ``hp`` object it is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any

from tuning.config import Settings
from tuning.config.space import Hyperparameters, SearchSpace
from tuning.errors import ConfigError
from tuning.payload import Payload
from tuning.redaction import redact

_UNITS = re.compile(r"units_(\d+)")

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


@dataclass(frozen=True)
class KerasTunerOptions:
    """The ``engine`` group's options for engine=keras_tuner, checked once (``parse``): the
    algorithm and its KerasTuner options (None: KerasTuner's default, or no limit). Stored in
    the study's ``study.json`` (``as_dict``), where a resume compares them."""

    algorithm: str = "bayesian"
    max_epochs: int | None = None  # hyperband: the engine sets it from the space when null
    factor: int = 3
    hyperband_iterations: int | None = None
    num_initial_points: int | None = None
    alpha: float = 1e-4
    beta: float = 2.6

    @classmethod
    def parse(cls, engine: Payload) -> KerasTunerOptions:
        """``Component.options`` of the engine group; one ConfigError line naming the key otherwise."""
        allowed = ("name", "algorithm", *OPTIONS)
        unknown = sorted(set(engine) - set(allowed))
        if unknown:
            raise ConfigError(
                f"engine.{unknown[0]}", f"not an option of engine=keras_tuner; allowed: {', '.join(allowed)}"
            )
        algorithm = engine.get("algorithm", "bayesian")
        if algorithm not in ALGORITHMS:
            raise ConfigError("engine.algorithm", f"{algorithm!r} is not one of: {', '.join(ALGORITHMS)}")
        options: dict[str, int | float | None] = {}
        for key, (_, low, integer, above) in OPTIONS.items():
            value = engine.get(key, DEFAULTS.get(key))
            if value is None and key not in DEFAULTS:
                options[key] = None
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (
                not number
                or (integer and float(value) != int(value))
                or value < low
                or (above and value == low)
            ):
                kind = "an integer" if integer else "a number"
                bound = f"{'>' if above else '>='} {int(low) if integer else low}"
                null = "" if key in DEFAULTS else " or null"
                raise ConfigError(f"engine.{key}", f"{value!r}; must be {kind} {bound}{null}")
            options[key] = int(value) if integer else float(value)
        # Each value was checked above to be its field's kind (an int, a float, or None).
        return cls(algorithm=str(algorithm), **options)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, str | int | float | None]:
        """The options as ``study.json`` keeps them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_supported(settings: Settings) -> None:
    """Refuse, in one line, what KerasTuner cannot do (docs/engines.md)."""
    if settings.study.storage:
        raise ConfigError(
            "study.storage",
            f"{redact(settings.study.storage)!r}: engine=keras_tuner keeps its study in files under "
            "experiments/<study>/keras_tuner/ (one worker, no database); leave study.storage=null, or use "
            "engine=optuna for a shared storage and several workers",
        )
    pruner = settings.pruner.name
    if pruner not in DEFAULT_PRUNERS:
        raise ConfigError(
            "pruner",
            f"'{pruner}': KerasTuner has no pruners; engine.algorithm=hyperband is its way to stop poor "
            "trials early (allowed here: the default, or none), or use engine=optuna",
        )
    sampler = settings.sampler.name
    if sampler != DEFAULT_SAMPLER:
        raise ConfigError(
            "sampler",
            f"'{sampler}' is an Optuna sampler; with engine=keras_tuner choose "
            f"engine.algorithm={'|'.join(ALGORITHMS)}",
        )


def hyperband_max_epochs(options: KerasTunerOptions, space: SearchSpace, cap: int | None) -> int:
    """Hyperband's largest budget: ``engine.max_epochs``, else the space's largest ``epochs``
    (capped by ``training.max_epochs``, which caps every trial anyway)."""
    if options.max_epochs:
        return options.max_epochs
    dim = space.dimensions.get("epochs")
    epochs = int(dim.high) if dim is not None else int(space.fixed.get("epochs", 50))  # type: ignore[arg-type]
    return min(epochs, cap) if cap else epochs


def hyperband_brackets(max_epochs: int, factor: int) -> list[list[tuple[int, int]]]:
    """One Hyperband iteration of KerasTuner's ``HyperbandOracle``, in the order it runs them:
    per bracket (most aggressive first), per round, ``(trials, epochs)``.

    Computed from the public parameters with the oracle's own formulas (its docstring's
    algorithm, KerasTuner 1.4; same float arithmetic, so the same roundings): brackets while
    ``max_epochs / factor**k >= 1``; bracket ``b`` has ``b + 1`` rounds; round ``r`` of bracket
    ``b`` trains ``ceil(ceil(1 + log_factor(max_epochs)) / (b + 1) * factor**(b - r))`` trials for
    ``ceil(max_epochs / factor**(b - r))`` epochs. A round's trials are the best of the round
    before, trained longer, so a bracket reaches ``max_epochs`` only in its last round.
    """
    count, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        count += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    return [
        [
            (math.ceil(end_size / (b + 1) * factor ** (b - r)), math.ceil(max_epochs / factor ** (b - r)))
            for r in range(b + 1)
        ]
        for b in reversed(range(count))
    ]


def hyperband_trials(max_epochs: int, factor: int) -> tuple[int, int]:
    """Trials one whole Hyperband iteration runs, and the count of trials up to the first one
    trained for ``max_epochs`` (the first of its first bracket's last round)."""
    brackets = hyperband_brackets(max_epochs, factor)
    return sum(n for bracket in brackets for n, _ in bracket), sum(n for n, _ in brackets[0][:-1]) + 1


def hyperband_short(options: KerasTunerOptions, n_trials: int) -> str | None:
    """The warning line when ``study.n_trials`` ends Hyperband before one whole iteration (its
    first brackets would never promote a trial to ``max_epochs``); None when it does not.
    ``options.max_epochs`` is set (``hyperband_max_epochs``)."""
    max_epochs, factor = int(options.max_epochs or 0), options.factor
    full, first = hyperband_trials(max_epochs, factor)
    if n_trials >= full:
        return None
    brackets = hyperband_brackets(max_epochs, factor)
    trials, epochs = brackets[0][0]
    return (
        f"warning: study.n_trials={n_trials} stops Hyperband before one whole iteration, which needs "
        f"study.n_trials={full} ({len(brackets)} brackets for max_epochs={max_epochs}, factor={factor}): "
        f"its first bracket trains {trials} trials for {epochs} epoch(s) each, and no trial trains "
        f"{max_epochs} epochs until {first} trials have run; raise study.n_trials, or lower engine.max_epochs"
    )


def layer_counts(space: SearchSpace) -> list[int]:
    """Every value ``n_layers`` can take (one value when it is fixed)."""
    dim = space.dimensions.get("n_layers")
    if dim is None:
        return [Hyperparameters().n_layers if "n_layers" not in space.fixed else int(space.fixed["n_layers"])]
    step = int(dim.step or 1)
    return list(range(int(dim.low), int(dim.high) + 1, step))  # type: ignore[arg-type]


class KerasTunerSuggester:
    """A ``Suggester`` backed by a ``keras_tuner.HyperParameters`` (``hp``)."""

    def __init__(self, hp: Any, space: SearchSpace) -> None:
        self.hp = hp
        self.layers = layer_counts(space)
        self.conditional = "n_layers" in space.dimensions

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        # KerasTuner's `step` with sampling="log" is a multiplier; our space never sets both.
        with self._scope(name):
            value = self.hp.Int(
                name, low, high, step=None if log else step, sampling="log" if log else "linear"
            )
        return int(value)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        with self._scope(name):
            value = self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear")
        return float(value)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        with self._scope(name):
            return self.hp.Choice(name, list(choices))

    def _scope(self, name: str) -> Any:
        match = _UNITS.fullmatch(name)
        if not self.conditional or match is None or int(match.group(1)) == 0:
            return nullcontext()
        layer = int(match.group(1))
        return self.hp.conditional_scope("n_layers", [n for n in self.layers if n > layer])


def declare(space: SearchSpace, hp: Any) -> None:
    """Declare every dimension of ``space`` in ``hp``, every layer's width included.

    ``SearchSpace.suggest`` asks only for the widths of the layers a point has, so one pass
    would miss ``units_1``...: each width is declared once with ``n_layers`` set to its largest
    value, and ``n_layers`` is then put back to its default.
    """
    suggester = KerasTunerSuggester(hp, space)
    space.suggest(suggester)
    units = space.dimensions.get("units")
    if units is None or "n_layers" not in space.dimensions:
        return
    default = hp.values["n_layers"]
    hp.values["n_layers"] = max(suggester.layers)
    for i in range(1, max(suggester.layers)):
        units.suggest(suggester, f"units_{i}")
    hp.values["n_layers"] = default
    _drop_inactive(hp)


def _drop_inactive(hp: Any) -> None:
    """Remove values of dimensions whose condition no longer holds (KerasTuner stores active values only)."""
    for entry in hp.space:
        if not hp.is_active(entry):
            hp.values.pop(entry.name, None)


def int_names(space: SearchSpace, hp: Hyperparameters) -> list[str]:
    """Which of the point's params are integer dimensions (how Optuna's records mark them)."""
    names = [n for n, d in space.dimensions.items() if d.type == "int" and n != "units"]
    if "units" in space.dimensions and space.dimensions["units"].type == "int":
        names += [f"units_{i}" for i in range(hp.n_layers)]
    return names
