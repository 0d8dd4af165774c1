"""Registry of data sources: ``data.source`` names a loader that returns a raw table."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from tuning.config.data import DataConfig
from tuning.data import sklearn
from tuning.data.plants import load_plants
from tuning.data.table import load_csv

# A loader takes the data config's own options (plus the seed) and returns
# (raw table, target column name). Adding a source: one entry here, one conf/data/*.yaml.
Loader = Callable[[DataConfig, int], tuple[pd.DataFrame, str]]


def _plants(options: DataConfig, seed: int) -> tuple[pd.DataFrame, str]:
    n_samples = options.integer("n_samples", 3000, minimum=10)
    noise = options.number("noise", 0.05, minimum=0.0, maximum=1.0)
    return load_plants(n_samples=n_samples, noise=noise, seed=seed), "species"


def _bundled(options: DataConfig, seed: int) -> tuple[pd.DataFrame, str]:
    del seed  # bundled data is fixed; the seed only shuffles the splits
    return sklearn.load_bundled(sklearn.bundled_name(options)), sklearn.TARGET


def _generator(make: Callable[[DataConfig, int], pd.DataFrame]) -> Loader:
    def load(options: DataConfig, seed: int) -> tuple[pd.DataFrame, str]:
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
