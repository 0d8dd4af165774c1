"""scikit-learn data: the bundled data sets (``load_*``) and the generators (``make_*``).

Only data shipped inside scikit-learn or generated locally: nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets

from tuning.config.data import DataConfig
from tuning.errors import ConfigError

TARGET = "target"

# Bundled data sets: name -> loader. Each ships with scikit-learn (no network).
BUNDLED: dict[str, Callable[..., Any]] = {
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
    "digits": datasets.load_digits,
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
}
GENERATORS: tuple[str, ...] = ("moons", "circles", "classification", "regression")


def load_bundled(name: str) -> pd.DataFrame:
    """One bundled data set as a table with a ``target`` column.

    Class targets become a categorical of the data set's own class names, in scikit-learn's
    order, so class indices match scikit-learn's and the class names are readable.
    """
    if name not in BUNDLED:
        hint = f" ('{name}' is a generator: use data={name})" if name in GENERATORS else ""
        raise ConfigError(
            "data.name",
            f"unknown scikit-learn data set '{name}'; choose one of: {', '.join(sorted(BUNDLED))}{hint}",
        )
    bunch = BUNDLED[name](as_frame=True)
    frame = bunch.frame.rename(columns={bunch.target.name: TARGET})
    names = getattr(bunch, "target_names", None)
    if names is not None:  # classification: regression sets have no target_names
        labels = np.asarray(names, dtype=str)[frame[TARGET].to_numpy(dtype=int)]
        frame[TARGET] = pd.Categorical(labels, categories=list(map(str, names)))
    return frame


def _table(x: np.ndarray, y: np.ndarray, *, classes: bool) -> pd.DataFrame:
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    # Categorical class labels are always read as classification, whatever their count.
    frame[TARGET] = pd.Categorical(y) if classes else y
    return frame


def _generate(name: str, make: Callable[..., Any], **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = make(**kwargs)
        return np.asarray(x), np.asarray(y)
    except ValueError as err:  # option combinations scikit-learn rejects
        raise ConfigError("data", f"{name}: {' '.join(str(err).split())}") from None


def make_moons(data: DataConfig, seed: int) -> pd.DataFrame:
    """Two interleaving half circles (binary, 2 features)."""
    x, y = _generate(
        "moons",
        datasets.make_moons,
        n_samples=data.integer("n_samples", 1000, minimum=1),
        noise=data.number("noise", 0.2, minimum=0.0),
        random_state=seed,
    )
    return _table(x, y, classes=True)


def make_circles(data: DataConfig, seed: int) -> pd.DataFrame:
    """A small circle inside a large one (binary, 2 features)."""
    factor = data.number("factor", 0.5, minimum=0.0)
    if factor >= 1.0:
        raise ConfigError("data.factor", f"must be below 1 (inner / outer radius), got {factor}")
    x, y = _generate(
        "circles",
        datasets.make_circles,
        n_samples=data.integer("n_samples", 1000, minimum=1),
        noise=data.number("noise", 0.1, minimum=0.0),
        factor=factor,
        random_state=seed,
    )
    return _table(x, y, classes=True)


def make_classification(data: DataConfig, seed: int) -> pd.DataFrame:
    """Gaussian clusters per class (binary or multiclass, ``n_features`` features)."""
    n_features = data.integer("n_features", 20, minimum=1)
    n_informative = data.integer("n_informative", 5, minimum=1)
    n_redundant = data.integer("n_redundant", 2, minimum=0)
    n_classes = data.integer("n_classes", 2, minimum=2)
    n_clusters = data.integer("n_clusters_per_class", 2, minimum=1)
    # Checked here to name the key; scikit-learn's own message names no option.
    if n_informative + n_redundant > n_features:
        raise ConfigError(
            "data.n_informative",
            f"n_informative ({n_informative}) + n_redundant ({n_redundant}) "
            f"must be <= n_features ({n_features})",
        )
    if n_classes * n_clusters > 2**n_informative:
        raise ConfigError(
            "data.n_classes",
            f"n_classes ({n_classes}) * n_clusters_per_class ({n_clusters}) "
            f"must be <= 2**n_informative ({2**n_informative})",
        )
    x, y = _generate(
        "classification",
        datasets.make_classification,
        n_samples=data.integer("n_samples", 1000, minimum=1),
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=n_redundant,
        n_classes=n_classes,
        n_clusters_per_class=n_clusters,
        class_sep=data.number("class_sep", 1.0, minimum=0.0),
        flip_y=data.number("flip_y", 0.01, minimum=0.0, maximum=1.0),
        random_state=seed,
    )
    return _table(x, y, classes=True)


def make_regression(data: DataConfig, seed: int) -> pd.DataFrame:
    """A noisy linear target of ``n_informative`` of the ``n_features`` features."""
    n_features = data.integer("n_features", 10, minimum=1)
    n_informative = data.integer("n_informative", 5, minimum=1)
    if n_informative > n_features:
        raise ConfigError(
            "data.n_informative",
            f"n_informative ({n_informative}) must be <= n_features ({n_features})",
        )
    x, y = _generate(
        "regression",
        datasets.make_regression,
        n_samples=data.integer("n_samples", 1000, minimum=1),
        n_features=n_features,
        n_informative=n_informative,
        noise=data.number("noise", 10.0, minimum=0.0),
        random_state=seed,
    )
    return _table(x, y, classes=False)


def bundled_name(data: DataConfig) -> str:
    """The bundled data set named by ``data.name`` (default breast_cancer: a ``name`` left
    null resolves to the source's own name)."""
    return data.name if data.name != data.source else "breast_cancer"
