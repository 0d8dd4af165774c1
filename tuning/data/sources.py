"""Registry of data sources: ``data.source`` names a loader that returns a raw table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from tuning.data import sklearn
from tuning.data.options import float_option, int_option, option
from tuning.data.plants import load_plants
from tuning.data.table import load_csv

# A loader takes the data config's own options (plus the seed) and returns
# (raw table, target column name). Adding a source: one entry here, one conf/data/*.yaml.
Loader = Callable[[Mapping[str, Any], int], tuple[pd.DataFrame, str]]


def _plants(options: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, str]:
    n_samples = int_option(options, "n_samples", 3000, minimum=10)
    noise = float_option(options, "noise", 0.05, minimum=0.0, maximum=1.0)
    return load_plants(n_samples=n_samples, noise=noise, seed=seed), "species"


def _bundled(options: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, str]:
    del seed  # bundled data is fixed; the seed only shuffles the splits
    return sklearn.load_bundled(str(option(options, "name", "breast_cancer"))), sklearn.TARGET


def _generator(make: Callable[[Mapping[str, Any], int], pd.DataFrame]) -> Loader:
    def load(options: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, str]:
        return make(options, seed), sklearn.TARGET

    return load


LOADERS: dict[str, Loader] = {
    "plants": _plants,
    "sklearn": _bundled,
    "moons": _generator(sklearn.make_moons),
    "circles": _generator(sklearn.make_circles),
    "classification": _generator(sklearn.make_classification),
    "regression": _generator(sklearn.make_regression),
    "csv": load_csv,
}
