"""The search space from config: which settings exist and which values each allows, parsed and
checked into a SearchSpace (one line per mistake, naming the key)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuning.config.space import Dimension, Hyperparameters, SearchSpace
from tuning.config.tasks import ACTIVATIONS, LOSSES, OPTIMIZERS, loss_fits
from tuning.errors import ConfigError
from tuning.payload import Payload, RawConfig

# --- settings: what each name means and which values are allowed -------------------------


def _at_least(bound: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= bound else f"must be >= {bound}"


def _one_of(names: Sequence[str]) -> Callable[[Any], str | None]:
    return lambda v: None if v in names else f"must be one of: {', '.join(names)}"


def _dropout(v: Any) -> str | None:
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


@dataclass(frozen=True)
class Setting:
    kind: type
    check: Callable[[Any], str | None]


# Adding a search dimension: one entry here, one field in Hyperparameters, one YAML entry.
SETTINGS: dict[str, Setting] = {
    "n_layers": Setting(int, _at_least(1)),
    "units": Setting(int, _at_least(1)),
    "activation": Setting(str, _one_of(ACTIVATIONS)),
    "dropout": Setting(float, _dropout),
    "learning_rate": Setting(float, _positive),
    "batch_size": Setting(int, _at_least(1)),
    "epochs": Setting(int, _at_least(1)),
    "optimizer": Setting(str, _one_of(tuple(OPTIMIZERS))),
    # Which losses fit is decided against the task (check_task), once the data is known.
    "loss": Setting(str, lambda v: None),
}

DIMENSION_TYPES = ("int", "float", "categorical")

# What the search space holds for a custom model: how each trial trains. Its builder draws the rest.
CUSTOM_SETTINGS = ("batch_size", "epochs")


# --- parsing and validation ----------------------------------------------------------------


def parse_space(config: RawConfig, task: str | None = None, builder: str | None = None) -> SearchSpace:
    """Validate the ``search_space`` config and build the SearchSpace.

    Args:
        config: the ``search_space`` mapping (plain dict or DictConfig).
        task: when given, losses are checked against it and ``choices: auto`` is expanded.
        builder: model=custom's ``model.build``: only ``CUSTOM_SETTINGS`` are allowed.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    dims: dict[str, Dimension] = {}
    fixed: dict[str, Any] = {}
    for name, entry in config.items():
        key = f"search_space.{name}"
        if builder is not None and name not in CUSTOM_SETTINGS:
            raise ConfigError(
                key,
                f"not a setting of model=custom (its builder draws the model's hyperparameters); "
                f"allowed: {', '.join(CUSTOM_SETTINGS)}",
            )
        if name not in SETTINGS:
            raise ConfigError(key, f"unknown setting; allowed: {', '.join(SETTINGS)}")
        if isinstance(entry, Mapping):
            dim = _parse_dimension(key, name, entry, task)
            if dim.type == "categorical" and len(dim.choices) == 1:
                fixed[name] = dim.choices[0]
            else:
                dims[name] = dim
        else:
            fixed[name] = _check_fixed(key, name, entry)
    _check_units(fixed, dims)
    space = SearchSpace(dims, fixed, builder)
    if task is not None:
        check_task(space, task)
    return space


def check_task(space: SearchSpace, task: str) -> None:
    """Raise ConfigError if a loss of ``space`` does not fit ``task``."""
    losses = (
        space.fixed.get("loss", "auto"),
        *(space.dimensions["loss"].choices if "loss" in space.dimensions else ()),
    )
    for loss in losses:
        if not loss_fits(str(loss), task):
            raise ConfigError(
                "search_space.loss",
                f"'{loss}' does not fit a {task} target; allowed: auto, {', '.join(LOSSES[task])}",
            )


def _parse_dimension(key: str, name: str, entry: RawConfig, task: str | None) -> Dimension:
    kind = _check_keys(key, entry)
    if kind == "categorical":
        return _parse_categorical(key, name, entry.get("choices"), task)
    _check_kind(key, name, kind)
    low, high, step, log = (
        entry.get("low"),
        entry.get("high"),
        entry.get("step"),
        bool(entry.get("log", False)),
    )
    _check_bounds(key, name, kind, low, high)
    _check_range(key, kind=kind, low=low, high=high, step=step, log=log)
    return Dimension(kind, low=low, high=high, step=step, log=log)


def _check_keys(key: str, entry: RawConfig) -> str:
    """The entry's ``type``, once it is a known one and every other key is an option of it."""
    kind = entry.get("type")
    if kind not in DIMENSION_TYPES:
        raise ConfigError(f"{key}.type", f"{kind!r} is not one of: {', '.join(DIMENSION_TYPES)}")
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step", "log"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}",
            f"not an option of a {kind} dimension; allowed: {', '.join(sorted(allowed))}",
        )
    return str(kind)


def _check_kind(key: str, name: str, kind: str) -> None:
    """A numeric ``kind`` the setting ``name`` takes."""
    setting = SETTINGS[name]
    if kind == "float" and setting.kind is not float:
        raise ConfigError(f"{key}.type", f"{name} takes {setting.kind.__name__} values, not float")
    if kind == "int" and setting.kind is str:
        raise ConfigError(f"{key}.type", f"{name} takes names; use type: categorical")


def _check_bounds(key: str, name: str, kind: str, low: Any, high: Any) -> None:
    """Each of low and high on its own: a number of the kind, a value the setting allows."""
    setting = SETTINGS[name]
    for bound_name, bound in (("low", low), ("high", high)):
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            raise ConfigError(f"{key}.{bound_name}", f"{bound!r} is not a number")
        if kind == "int" and float(bound) != int(bound):
            raise ConfigError(f"{key}.{bound_name}", f"{bound!r} is not an integer")
        problem = setting.check(bound)
        if problem:
            raise ConfigError(f"{key}.{bound_name}", f"{bound!r}: {name} {problem}")


def _check_range(key: str, *, kind: str, low: Any, high: Any, step: Any, log: bool) -> None:
    """low, high, step and log together: an ordered, finite range, on a log scale or in steps."""
    if low > high:
        raise ConfigError(key, f"low ({low}) > high ({high}); low must be <= high")
    if log and low <= 0:
        raise ConfigError(f"{key}.low", f"{low!r} with log: true; log scale needs low > 0")
    if log and step is not None:
        raise ConfigError(f"{key}.step", f"{step!r} together with log: true; use either step or log")
    if step is not None and (
        not isinstance(step, (int, float)) or step <= 0 or (kind == "int" and step != int(step))
    ):
        raise ConfigError(
            f"{key}.step", f"{step!r}; step must be a positive {'integer' if kind == 'int' else 'number'}"
        )
    if kind == "float" and not all(math.isfinite(float(v)) for v in (low, high)):
        raise ConfigError(key, "low and high must be finite")


def _parse_categorical(key: str, name: str, choices: Any, task: str | None) -> Dimension:
    if name == "loss" and choices == "auto":
        # ``choices: auto``: every loss that fits the task, known only once the data is.
        return Dimension("categorical", choices=LOSSES[task] if task else ("auto",))
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or len(choices) == 0:
        raise ConfigError(f"{key}.choices", f"{choices!r}; choices must be a non-empty list")
    checked = tuple(_check_fixed(f"{key}.choices", name, c) for c in choices)
    if len(set(checked)) != len(checked):
        raise ConfigError(f"{key}.choices", f"{list(choices)} lists a value twice")
    return Dimension("categorical", choices=checked)


def _check_fixed(key: str, name: str, value: Any) -> Any:
    setting = SETTINGS[name]
    if name == "units" and isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 0:
            raise ConfigError(key, "an empty list; give one width per hidden layer")
        return [_check_fixed(key, name, v) for v in value]
    ok_type = (
        isinstance(value, str)
        if setting.kind is str
        else isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    if not ok_type or (setting.kind is int and float(value) != int(value)):
        raise ConfigError(key, f"{value!r}: {name} takes {setting.kind.__name__} values")
    problem = setting.check(value)
    if problem:
        raise ConfigError(key, f"{value!r}: {name} {problem}")
    return setting.kind(value)


def _check_units(fixed: RawConfig, dims: Mapping[str, Dimension]) -> None:
    units = fixed.get("units")
    if not isinstance(units, list):
        return
    if "n_layers" in dims:
        raise ConfigError(
            "search_space.units", "a list of widths needs a fixed n_layers; give one width or a dimension"
        )
    if "n_layers" in fixed and fixed["n_layers"] != len(units):
        raise ConfigError(
            "search_space.units", f"{units} has {len(units)} widths but n_layers is {fixed['n_layers']}"
        )


def hyperparameters_from_config(
    config: RawConfig,
    task: str | None = None,
    *,
    builder: str | None = None,
    extra: Payload | None = None,
) -> Hyperparameters:
    """A fully fixed search space (as in best.yaml) as Hyperparameters; ``builder`` and ``extra``
    (its stored values) for a custom model.

    Raises:
        ConfigError: if a setting is still a dimension to search.
    """
    space = parse_space(config, task, builder)
    if space.dimensions:
        name = next(iter(space.dimensions))
        raise ConfigError(f"search_space.{name}", "is a dimension to search; a fixed value is needed here")
    hp = space.suggest(_NoSampling())
    return replace(hp, extra=dict(extra or {})) if builder is not None else hp


class _NoSampling:
    def suggest_int(self, *a: Any, **k: Any) -> int:  # pragma: no cover - never called
        raise AssertionError

    suggest_float = suggest_categorical = suggest_int
