"""The ``data`` group, checked once into a typed ``DataConfig``.

What every source shares (``source``, ``name``, ``task``, the file keys, the column choice) is a
typed field. A source's own options (``n_samples``, ``noise``, ``factor``...) stay in
``options``: the group is open, as a Hydra plugin's config is, so adding a source needs no
change here; the loader that owns an option reads it through ``integer`` / ``number``,
which name the key (``data.<key>``) and what is allowed when the value is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf.errors import MissingMandatoryValue

from tuning.errors import ConfigError
from tuning.payload import Payload, RawConfig

# Keys every source may use; the rest of the group is the source's own options.
SHARED = ("source", "name", "task", "path", "target", "test_path", "sep", "features", "drop")


def _value(raw: RawConfig, key: str) -> Any:
    """``raw[key]``; None when absent, null or still ``???`` (an unset mandatory value)."""
    try:
        value = raw.get(key)
    except MissingMandatoryValue:  # omegaconf raises on reading a '???' value
        return None
    return None if value is None or value == "???" else value


def _columns(key: str, value: Any) -> tuple[str, ...] | None:
    """A list of column names; a single string is a one-item list, null None."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        raise ConfigError(f"data.{key}", f"must be a list of column names, got {value!r}") from None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def dataset_name(data: RawConfig) -> str:
    """The data set's name without loading it: ``data.name``, else the data file's stem.

    Free of pandas and scikit-learn, because composing any config resolves it
    (``study.name: ${dataset_name:${data}}``) and config errors must answer fast.

    Raises:
        ConfigError: under ``data.path`` for a file source with neither set.
    """
    if _text(_value(data, "name")) is not None:
        return str(_value(data, "name"))
    if _text(_value(data, "path")) is not None:
        return Path(str(_value(data, "path"))).stem
    if data.get("source") == "csv":
        raise ConfigError("data.path", "is required: set data.path=customers.csv")
    return str(data.get("source") or "data")


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` group: the source, the settings every source shares, the source's options."""

    source: str
    name: str
    task: str | None = None
    path: str | None = None
    target: str | None = None
    test_path: str | None = None
    sep: str | None = None
    features: tuple[str, ...] | None = None  # None: every column but the target
    drop: tuple[str, ...] = ()
    options: Payload = field(default_factory=dict)  # the source's own keys

    @classmethod
    def parse(cls, raw: RawConfig) -> DataConfig:
        """Read the group (a composed ``DictConfig`` or a plain dict); ``???`` counts as unset."""
        return cls(
            source=str(_value(raw, "source") or ""),
            name=dataset_name(raw),
            task=_text(_value(raw, "task")),
            path=_text(_value(raw, "path")),
            target=_text(_value(raw, "target")),
            test_path=_text(_value(raw, "test_path")),
            sep=_text(_value(raw, "sep")),
            features=_columns("features", _value(raw, "features")),
            drop=_columns("drop", _value(raw, "drop")) or (),
            options={str(k): _value(raw, str(k)) for k in raw if k not in SHARED},
        )

    def required(self, key: str, example: str) -> str:
        """A shared file key (``path``, ``target``) a source needs, or how to set it."""
        value = getattr(self, key)
        if value is None:
            raise ConfigError(f"data.{key}", f"is required: set data.{key}={example}")
        return str(value)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        """The source's option ``key``: an integer of at least ``minimum`` (5e3 is accepted)."""
        value = self._option(key, default)
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or value < minimum:
            raise ConfigError(f"data.{key}", f"must be an integer >= {minimum}, got {value!r}")
        return int(value)

    def number(
        self, key: str, default: float, *, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        """The source's option ``key``: a number within ``[minimum, maximum]`` (either optional)."""
        value = self._option(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"data.{key}", f"must be a number, got {value!r}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            low = "-inf" if minimum is None else minimum
            high = "inf" if maximum is None else maximum
            raise ConfigError(f"data.{key}", f"must be in [{low}, {high}], got {value!r}")
        return float(value)

    def size_key(self) -> str:
        """What to change when a generated table is too small for the splits."""
        return "data.n_samples" if self.options.get("n_samples") is not None else "data"

    def _option(self, key: str, default: Any) -> Any:
        value = self.options.get(key)
        return default if value is None else value
