"""The one object every data source produces: prepared splits plus what is needed to reuse them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]


@dataclass
class Dataset:
    """Train / validation / test splits, already preprocessed to float32 feature matrices.

    ``y`` holds class indices (int32, ``0..n_classes-1``) for classification and float32
    values for regression, in the target's own units. ``preprocessor`` is fitted on the training
    rows only and maps a raw pandas frame with ``columns`` to the feature matrix; ``class_names``
    maps indices back to the original labels. ``target_scaler`` (regression only) is a
    scikit-learn ``StandardScaler`` fitted on the training rows: models train on the standardized
    target and report their errors in the target's units.
    """

    name: str
    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    target: str
    columns: list[str]
    feature_names: list[str]
    class_names: list[str] | None = None
    preprocessor: Any = None
    target_scaler: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    # The raw (unprocessed) feature rows of train + validation and their labels: k-fold scores
    # (cv.folds, tuning/data/folds.py) refit the preprocessing inside each fold, so no fold's
    # scaling sees its validation rows. ``rows``: each split's row numbers in the source table.
    dev_frame: Any = None
    dev_y: np.ndarray | None = None
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (1 for regression)."""
        return len(self.class_names) if self.class_names else 1

    @property
    def target_units(self) -> tuple[float, float]:
        """``(mean, scale)`` mapping a standardized target back to its units; ``(0, 1)`` if unscaled."""
        if self.target_scaler is None:
            return 0.0, 1.0
        return float(self.target_scaler.mean_[0]), float(self.target_scaler.scale_[0])

    def summary(self, folds: int | None = None) -> str:
        """One line for logs: sizes, task and classes. With ``folds`` (cv.folds) the sizes say what
        the trials score on: k folds of train + validation, the test rows held out."""
        classes = f", classes {self.class_names}" if self.class_names else ""
        if folds:
            dev = len(self.y_train) + len(self.y_val)
            sizes = f"k-fold on train+validation (k={folds}, {dev} rows), test {len(self.y_test)} held out"
        else:
            sizes = f"train {len(self.y_train)} / val {len(self.y_val)} / test {len(self.y_test)} rows"
        return f"data '{self.name}': {self.task}, {self.n_features} features, {sizes}{classes}"
