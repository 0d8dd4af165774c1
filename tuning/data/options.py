"""Typed reads of ``data.*`` options, failing with the config key on a bad value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf.errors import MissingMandatoryValue

from tuning.errors import ConfigError


def option(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``data[key]``, or ``default`` when absent, null or still ``???`` (unset mandatory)."""
    try:
        value = data.get(key, default)
    except MissingMandatoryValue:  # omegaconf raises on reading a '???' value
        return default
    if value is None or value == "???":
        return default
    return value


def required(data: Mapping[str, Any], key: str, example: str = "...") -> Any:
    """``data[key]``, or a ConfigError telling how to set it."""
    value = option(data, key)
    if value is None or value == "":
        raise ConfigError(f"data.{key}", f"is required: set data.{key}={example}")
    return value


def int_option(data: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    """An integer option of at least ``minimum`` (whole floats such as 5e3 are accepted)."""
    value = option(data, key, default)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < minimum:
        raise ConfigError(f"data.{key}", f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def float_option(
    data: Mapping[str, Any],
    key: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """A number option within ``[minimum, maximum]`` (either bound optional)."""
    value = option(data, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"data.{key}", f"must be a number, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ConfigError(f"data.{key}", f"must be in [{low}, {high}], got {value!r}")
    return float(value)


def list_option(data: Mapping[str, Any], key: str) -> list[str] | None:
    """A list of column names; a single string counts as a one-item list, null as None."""
    value = option(data, key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value]
    except TypeError:
        raise ConfigError(f"data.{key}", f"must be a list of column names, got {value!r}") from None
