"""Data sources behind one interface: a data config in, a prepared Dataset out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuning.config import dataset_name
from tuning.config.schema import SplitConfig
from tuning.config.tasks import TASKS
from tuning.data.dataset import Dataset, Task
from tuning.data.options import option
from tuning.data.prepare import check_task, prepare
from tuning.data.preprocess import FeaturePreprocessor, transform_features
from tuning.data.sources import LOADERS
from tuning.data.table import column_choice, read_test_table, select_columns
from tuning.errors import ConfigError

__all__ = [
    "TASKS",
    "Dataset",
    "FeaturePreprocessor",
    "Task",
    "dataset_name",
    "load_dataset",
    "transform_features",
]


def _size_key(data: Mapping[str, Any]) -> str:
    # What to change when a generated table is too small for the splits.
    return "data.n_samples" if option(data, "n_samples") is not None else "data"


def load_dataset(data: Mapping[str, Any], split: SplitConfig, seed: int) -> Dataset:
    """Load the source named by ``data.source`` and prepare its splits.

    The config is checked (source, task, split fractions) before any data is read.

    Args:
        data: the ``data`` config group (``source``, ``name``, optional ``task``, source options,
            optional ``features`` / ``drop`` / ``test_path``).
        split: the validation and test fractions.
        seed: seeds generation and splitting, so the same seed gives the same splits.
    """
    source = data.get("source")
    if source not in LOADERS:
        raise ConfigError("data.source", f"'{source}' is not one of: {', '.join(sorted(LOADERS))}")
    task = check_task(option(data, "task"))
    name = dataset_name(data)
    features, drop = column_choice(data)

    frame, target = LOADERS[source](data, seed)
    if features is not None or drop:
        frame = select_columns(frame, target, features=features, drop=drop)
    test_frame = read_test_table(data)
    path = option(data, "path")
    dataset = prepare(
        frame,
        target,
        name=name,
        split=split,
        seed=seed,
        task=task,
        test_frame=test_frame,
        where=str(path) if path else _size_key(data),
    )
    dataset.info.update(source=source, path=path, test_path=option(data, "test_path"))
    return dataset
