"""Our search space as KerasTuner hyperparameters: a ``Suggester`` over KerasTuner's ``hp``.

``SearchSpace.suggest`` asks for each value by name; this adapter answers with KerasTuner's
``hp.Int`` / ``hp.Float`` / ``hp.Choice``, which declare the dimension the first time and return
the oracle's value after. ``units_i`` (i >= 1) exists only when ``n_layers > i``, so it is
declared inside ``hp.conditional_scope("n_layers", [...])``: KerasTuner then neither samples
nor stores a width for a layer the model does not have. Takes the ``hp`` object it is given
(no keras_tuner import here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from tuning.search.space import Hyperparameters, SearchSpace

_UNITS = re.compile(r"units_(\d+)")


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
