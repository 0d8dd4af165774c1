"""Data sources behind one interface: a data config in, a prepared Dataset out."""

from __future__ import annotations

from tuning.config.data import DataConfig, dataset_name
from tuning.config.schema import SplitConfig
from tuning.config.tasks import TASKS
from tuning.data.dataset import Dataset, Task
from tuning.data.prepare import check_task, prepare
from tuning.data.preprocess import FeaturePreprocessor, transform_features
from tuning.data.sources import LOADERS
from tuning.data.table import read_test_table, select_columns
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


def load_dataset(data: DataConfig, split: SplitConfig, seed: int) -> Dataset:
    """Load the source named by ``data.source`` and prepare its splits.

    The config is checked (source, task, split fractions) before any data is read.

    Args:
        data: the ``data`` config group, checked (``Settings.data``; a notebook's or a test's
            own dict: ``DataConfig.parse({...})``), with ``source``, ``name``, optional ``task``,
            the source's options, optional ``features`` / ``drop`` / ``test_path``.
        split: the validation and test fractions.
        seed: seeds generation and splitting, so the same seed gives the same splits.
    """
    if data.source not in LOADERS:
        raise ConfigError("data.source", f"'{data.source}' is not one of: {', '.join(sorted(LOADERS))}")
    task = check_task(data.task)
    frame, target = LOADERS[data.source](data, seed)
    if data.features is not None or data.drop:
        frame = select_columns(frame, target, features=data.features, drop=data.drop)
    dataset = prepare(
        frame,
        target,
        name=data.name,
        split=split,
        seed=seed,
        task=task,
        test_frame=read_test_table(data),
        where=data.path or data.size_key(),
    )
    dataset.info.update(source=data.source, path=data.path, test_path=data.test_path)
    return dataset
