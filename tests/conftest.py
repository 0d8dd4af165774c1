"""Shared test helpers: compose the real configs once, shrink them for tiny, fast runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A few hundred rows, three epochs: each trial trains a real Keras model in a few seconds.
TINY = (
    "data.n_samples=400",
    "training.max_epochs=3",
    "study.n_trials=3",
    "tracking=none",
)


def settings(*overrides: str, tiny: bool = True) -> dict[str, Any]:
    """The resolved sweep config for ``overrides`` (composed from the real conf/)."""
    from tuning.config import compose, resolved

    return resolved(compose("config", [*(TINY if tiny else ()), *overrides]))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty working directory: everything a command writes lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(args: Sequence[str]) -> int:
    """Run the `tuning` command in-process; returns its exit code."""
    from tuning.cli import main

    try:
        return main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)
