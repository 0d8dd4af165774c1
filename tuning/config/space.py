"""The search space as data: dimensions, a point of the space (Hyperparameters), and how a trial samples it.

Each entry of ``search_space`` is either a dimension (a mapping with ``type``: ``int``,
``float`` or ``categorical``) or a fixed value. A setting left out takes its default.
``units`` is sampled once per hidden layer (``units_0``, ``units_1``, ...).
With ``model=custom`` the space holds only the training settings (``space_config.CUSTOM_SETTINGS``): the
user's builder draws the model's own hyperparameters while it builds (``tuning.model.hp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from tuning.payload import Payload, RawConfig


class Suggester(Protocol):
    """What a trial must offer to sample values (``optuna.Trial`` satisfies it)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Hyperparameters:
    """One point of the search space: everything needed to build and fit one model.

    For a custom model (``builder`` set: its dotted path) only ``batch_size`` and ``epochs`` are
    ours; ``extra`` holds the values the builder drew (its hp names), empty until it has built.
    """

    units: tuple[int, ...] = (32,)
    activation: str = "relu"
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 50
    optimizer: str = "adam"
    loss: str = "auto"
    builder: str | None = None
    extra: Payload = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(self.units)

    def as_config(self) -> dict[str, Any]:
        """The fixed search space that reproduces this point (as written to best.yaml); for a
        custom model, the training settings only (its builder's values are ``extra``)."""
        if self.builder is not None:
            return {"batch_size": self.batch_size, "epochs": self.epochs}
        values = asdict(self)
        del values["builder"], values["extra"]
        values["units"] = list(self.units)
        return {"n_layers": self.n_layers, **values}

    def as_params(self) -> dict[str, Any]:
        """Flat names, one per layer for units: the names the study and MLflow use; a custom
        model's are the training settings and its builder's own hp names."""
        if self.builder is not None:
            return {**self.as_config(), **self.extra}
        flat = {k: v for k, v in self.as_config().items() if k != "units"}
        flat.update({f"units_{i}": u for i, u in enumerate(self.units)})
        return flat


# --- dimensions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """A dimension to sample: ``int``/``float`` range or ``categorical`` choices."""

    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Suggester, name: str) -> Any:
        if self.type == "int":
            low, high = int(self.low or 0), int(self.high or 0)  # parse_space set both
            return trial.suggest_int(name, low, high, step=int(self.step or 1), log=self.log)
        if self.type == "float":
            return trial.suggest_float(
                name, float(self.low or 0.0), float(self.high or 0.0), step=self.step, log=self.log
            )
        return trial.suggest_categorical(name, list(self.choices))

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """Validated dimensions and fixed values, keyed by setting name."""

    dimensions: dict[str, Dimension] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    builder: str | None = None  # model=custom: the builder's path

    def suggest(self, trial: Suggester) -> Hyperparameters:
        """Sample one point: every dimension through ``trial``, fixed values as they are.
        (A custom model's own values are drawn later, while it builds.)"""
        values: dict[str, Any] = {}
        if self.builder is not None:
            values = {name: dim.suggest(trial, name) for name, dim in self.dimensions.items()}
            return Hyperparameters(**values, **self.fixed, builder=self.builder)
        for name, dim in self.dimensions.items():
            if name != "units":
                values[name] = dim.suggest(trial, name)
        values.update({k: v for k, v in self.fixed.items() if k != "units"})
        n_layers = int(values.pop("n_layers", _default_layers(self.fixed)))
        if "units" in self.dimensions:
            units = [self.dimensions["units"].suggest(trial, f"units_{i}") for i in range(n_layers)]
        else:
            units = _fixed_units(self.fixed.get("units", Hyperparameters.units[0]), n_layers)
        return Hyperparameters(units=tuple(int(u) for u in units), **values)

    def replay(self, params: Payload) -> Hyperparameters:
        """A stored trial's point from its parameters; for a custom model, the parameters that are
        not the space's own are its builder's values."""
        hp = self.suggest(FixedParams(params))
        if self.builder is None:
            return hp
        extra = {k: v for k, v in params.items() if k not in self.dimensions}
        return replace(hp, extra=extra)

    def describe(self) -> list[str]:
        """Human-readable lines, one per setting."""
        lines = []
        for name, dim in self.dimensions.items():
            if dim.type == "categorical":
                lines.append(f"{name}: one of {list(dim.choices)}")
            else:
                extra = (", log" if dim.log else "") + (f", step {dim.step}" if dim.step else "")
                lines.append(f"{name}: {dim.type} in [{dim.low}, {dim.high}]{extra}")
        lines += [f"{name}: {value} (fixed)" for name, value in self.fixed.items()]
        if self.builder is not None:
            lines.append(f"the model's own hyperparameters: drawn by {self.builder} as it builds")
        return lines


def _default_layers(fixed: RawConfig) -> int:
    units = fixed.get("units")
    return len(units) if isinstance(units, (list, tuple)) else Hyperparameters().n_layers


def _fixed_units(units: Any, n_layers: int) -> list[int]:
    if isinstance(units, (list, tuple)):
        return list(units)
    return [units] * n_layers


class FixedParams:
    """A ``Suggester`` that answers with stored values: a finished trial's parameters replayed
    through the same ``SearchSpace.suggest`` (a missing name raises KeyError)."""

    def __init__(self, params: Payload) -> None:
        self.params = params

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return int(self.params[name])

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self.params[name])

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params[name]
