"""KerasTuner's ``HyperParameters`` API (``hp.Int``, ``hp.Choice``, ...) over any engine's ``Suggester``.

A user's model builder draws its own hyperparameters while it builds (define-by-run). Each call
goes to the running engine's trial (``optuna.Trial.suggest_*``), to stored values for a replay
(``FixedParams``: resume, the final model), or, with no suggester, returns the declared default
(the probe build that checks a builder before any study exists). No Optuna, KerasTuner or
TensorFlow import.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tuning.config.space import Suggester
from tuning.errors import ConfigError

SAMPLINGS = ("linear", "log")


class HpError(ConfigError):
    """A builder asked for a hyperparameter it cannot have (bad range, a name asked twice with
    different ranges, an unknown parent): the builder's bug, one line under ``model.build``."""

    def __init__(self, builder: str, message: str) -> None:
        super().__init__("model.build", f"{builder}: {message}")


class HyperParameters:
    """What a builder receives as ``hp``: KerasTuner's API, backed by a ``Suggester``.

    Asking a name again with the same range returns the same value (as in KerasTuner); with a
    different range it raises ``HpError`` naming both. Inside an inactive ``conditional_scope``
    a call returns None and samples nothing, as KerasTuner's does.

    Args:
        suggester: the engine's trial, ``FixedParams`` for a replay, or None for the defaults.
        builder: the builder's path, for messages.
        reserved: names that are not the builder's (the search space's ``batch_size``, ``epochs``).
    """

    def __init__(
        self, suggester: Suggester | None = None, builder: str = "build", reserved: Sequence[str] = ()
    ) -> None:
        self.suggester = suggester
        self.builder = builder
        self.reserved = tuple(reserved)
        self.values: dict[str, Any] = {}  # active values, Fixed ones included (KerasTuner's `values`)
        self.sampled: dict[str, Any] = {}  # what went through the suggester: the trial's params
        self._specs: dict[str, tuple[Any, ...]] = {}
        self._scopes: list[tuple[str, tuple[Any, ...]]] = []

    # --- KerasTuner's methods ---------------------------------------------------------------

    def Int(  # noqa: N802, PLR0917 - KerasTuner's name and positional signature, as user builders call it
        self,
        name: str,
        min_value: int,
        max_value: int,
        step: int | None = None,
        sampling: str = "linear",
        default: int | None = None,
        parent_name: str | None = None,
        parent_values: Sequence[Any] | None = None,
    ) -> int | None:
        """An integer in ``[min_value, max_value]`` (both included); ``step`` apart, or with
        ``sampling="log"`` a log-uniform draw (``step`` then multiplies: ``2, 4, 8, ...``)."""
        for bound in (min_value, max_value):
            if not _is_int(bound):
                self._fail(f"hp.Int('{name}'): {bound!r} is not an integer")
        if step is not None and (not _is_int(step) or step < 1):
            self._fail(f"hp.Int('{name}'): step={step!r}; must be an integer >= 1")
        self._check_range("Int", name, min_value, max_value, sampling)
        if sampling == "log" and step is not None and step < 2 and step != 1:
            self._fail(f"hp.Int('{name}'): step={step!r} with sampling='log' multiplies; must be >= 2")
        if default is not None and not min_value <= default <= max_value:
            self._fail(f"hp.Int('{name}'): default={default!r} is outside [{min_value}, {max_value}]")
        spec = ("Int", int(min_value), int(max_value), step, sampling)
        first = min_value if default is None else default

        def draw(s: Suggester) -> int:
            if sampling == "log" and step is not None and step > 1:
                return int(s.suggest_categorical(name, _geometric(min_value, max_value, step)))
            log = sampling == "log"
            return int(
                s.suggest_int(name, int(min_value), int(max_value), step=1 if log else step or 1, log=log)
            )

        with self._maybe_scope(parent_name, parent_values):
            value: int | None = self._value(name, spec, int(first), draw)
            return value

    def Float(  # noqa: N802, PLR0917 - KerasTuner's name and positional signature, as user builders call it
        self,
        name: str,
        min_value: float,
        max_value: float,
        step: float | None = None,
        sampling: str = "linear",
        default: float | None = None,
        parent_name: str | None = None,
        parent_values: Sequence[Any] | None = None,
    ) -> float | None:
        """A float in ``[min_value, max_value]``: uniform, ``step`` apart, or log-uniform."""
        for bound in (min_value, max_value):
            if not _is_number(bound) or not math.isfinite(bound):
                self._fail(f"hp.Float('{name}'): {bound!r} is not a finite number")
        if step is not None and (not _is_number(step) or step <= 0):
            self._fail(f"hp.Float('{name}'): step={step!r}; must be a number > 0")
        self._check_range("Float", name, min_value, max_value, sampling)
        if sampling == "log" and step is not None and step <= 1:
            self._fail(f"hp.Float('{name}'): step={step!r} with sampling='log' multiplies; must be > 1")
        if default is not None and not min_value <= default <= max_value:
            self._fail(f"hp.Float('{name}'): default={default!r} is outside [{min_value}, {max_value}]")
        spec = ("Float", float(min_value), float(max_value), step, sampling)
        first = min_value if default is None else default

        def draw(s: Suggester) -> float:
            low, high = float(min_value), float(max_value)
            if sampling == "log" and step is not None:
                return float(s.suggest_categorical(name, _geometric(low, high, step)))
            if sampling == "log":
                return float(s.suggest_float(name, low, high, log=True))
            return float(s.suggest_float(name, low, high, step=step))

        with self._maybe_scope(parent_name, parent_values):
            number: float | None = self._value(name, spec, float(first), draw)
            return number

    def Choice(  # noqa: N802, PLR0917 - KerasTuner's name and positional signature, as user builders call it
        self,
        name: str,
        values: Sequence[Any],
        ordered: bool | None = None,
        default: Any = None,
        parent_name: str | None = None,
        parent_values: Sequence[Any] | None = None,
    ) -> Any:
        """One of ``values`` (int, float, str or bool); ``ordered`` is accepted and not used."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            self._fail(f"hp.Choice('{name}'): values={values!r}; must be a non-empty list")
        choices = list(values)
        if len(set(map(repr, choices))) != len(choices):
            self._fail(f"hp.Choice('{name}'): {choices} lists a value twice")
        if default is not None and default not in choices:
            self._fail(f"hp.Choice('{name}'): default={default!r} is not one of {choices}")
        spec = ("Choice", tuple(choices))
        first = choices[0] if default is None else default
        with self._maybe_scope(parent_name, parent_values):
            return self._value(name, spec, first, lambda s: s.suggest_categorical(name, choices))

    def Boolean(  # noqa: N802 - KerasTuner's name
        self,
        name: str,
        default: bool = False,
        parent_name: str | None = None,
        parent_values: Sequence[Any] | None = None,
    ) -> bool | None:
        """True or False."""
        with self._maybe_scope(parent_name, parent_values):
            value = self._value(
                name, ("Boolean",), bool(default), lambda s: s.suggest_categorical(name, [False, True])
            )
        return None if value is None else bool(value)

    def Fixed(  # noqa: N802 - KerasTuner's name
        self,
        name: str,
        value: Any,
        parent_name: str | None = None,
        parent_values: Sequence[Any] | None = None,
    ) -> Any:
        """A value that is not searched: in ``values``, not a trial parameter."""
        with self._maybe_scope(parent_name, parent_values):
            return self._value(name, ("Fixed", repr(value)), value, None)

    @contextmanager
    def conditional_scope(self, parent_name: str, parent_values: Any) -> Iterator[None]:
        """Hyperparameters asked inside are active only while ``parent_name`` is one of
        ``parent_values``; inactive ones return None and are not sampled (KerasTuner's rule)."""
        if parent_name not in self._specs:
            self._fail(
                f"conditional_scope('{parent_name}', ...): no hyperparameter '{parent_name}' asked before it"
            )
        wanted = tuple(parent_values) if isinstance(parent_values, (list, tuple)) else (parent_values,)
        self._scopes.append((parent_name, wanted))
        try:
            yield
        finally:
            self._scopes.pop()

    def get(self, name: str) -> Any:
        """The value of an active hyperparameter (KeyError if never asked, ValueError if inactive)."""
        if name in self.values:
            return self.values[name]
        if name in self._specs:
            raise ValueError(f"{name} is currently inactive.")
        raise KeyError(f"{name} does not exist.")

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    # --- the rules behind them --------------------------------------------------------------

    def is_active(self) -> bool:
        """Whether every enclosing conditional scope holds for the values drawn so far."""
        return all(self.values.get(parent, _INACTIVE) in wanted for parent, wanted in self._scopes)

    @contextmanager
    def _maybe_scope(self, parent_name: str | None, parent_values: Sequence[Any] | None) -> Iterator[None]:
        if parent_name is None:
            yield
            return
        with self.conditional_scope(parent_name, parent_values):
            yield

    def _value(self, name: str, spec: tuple[Any, ...], default: Any, draw: Any) -> Any:
        if not isinstance(name, str) or not name:
            self._fail(f"a hyperparameter name must be a non-empty string, not {name!r}")
        if name in self.reserved:
            self._fail(
                f"asks for '{name}', which is the search space's (search_space.{name}); use another name"
            )
        known = self._specs.get(name)
        if known is not None and known != spec:
            self._fail(
                f"asks for '{name}' twice with different ranges: {_show(known)} and {_show(spec)}; "
                "give each range its own name"
            )
        self._specs[name] = spec
        if not self.is_active():
            return None
        if name in self.values:
            return self.values[name]
        if draw is None or self.suggester is None:
            value = default
        else:
            try:
                value = draw(self.suggester)
            except (
                KeyError
            ):  # FixedParams without this name: the builder changed since the values were stored
                self._fail(
                    f"asks for '{name}', which the stored values do not hold (did the builder change?)"
                )
            self.sampled[name] = value
        self.values[name] = value
        return value

    def _check_range(self, kind: str, name: str, low: float, high: float, sampling: str) -> None:
        if sampling not in SAMPLINGS:
            self._fail(f"hp.{kind}('{name}'): sampling={sampling!r}; allowed: {', '.join(SAMPLINGS)}")
        if low > high:
            self._fail(f"hp.{kind}('{name}'): min_value ({low}) > max_value ({high})")
        if sampling == "log" and low <= 0:
            self._fail(f"hp.{kind}('{name}'): sampling='log' needs min_value > 0, not {low}")

    def _fail(self, message: str) -> Any:
        raise HpError(self.builder, message)


_INACTIVE = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _geometric(low: float, high: float, step: float) -> list[Any]:
    """KerasTuner's log sampling with a step: ``low, low*step, low*step**2, ... <= high``."""
    if step <= 1:
        raise ValueError("a log step must be > 1")
    values: list[Any] = []
    value = low
    while value <= high * (1 + 1e-12):
        values.append(int(round(value)) if isinstance(low, int) else float(value))
        value *= step
    return values


def _show(spec: tuple[Any, ...]) -> str:
    kind, *rest = spec
    if kind in ("Int", "Float"):
        low, high, step, sampling = rest
        extra = (f", step={step}" if step is not None else "") + (", log" if sampling == "log" else "")
        return f"{kind}({low}, {high}{extra})"
    if kind == "Choice":
        return f"Choice({list(rest[0])})"
    if kind == "Fixed":
        return f"Fixed({rest[0]})"
    return f"{kind}()"
