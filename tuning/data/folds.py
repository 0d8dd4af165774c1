"""K-fold splits of train + validation for ``cv.folds``, with the preprocessing refit inside each fold.

The test split is never part of a fold: folds are cut from ``Dataset.dev_frame`` (the raw
train + validation rows), stratified for classification and shuffled for regression, seeded
by the sweep's ``seed`` so every trial of a study sees the same folds (their scores compare).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from tuning.data.dataset import Dataset
from tuning.data.preprocess import FeaturePreprocessor
from tuning.errors import ConfigError


def check_fold_count(dataset: Dataset, folds: int) -> None:
    """Refuse more folds than rows to validate on (or, for classification, than the smallest
    class has rows in train + validation: a stratified fold needs one of each)."""
    if dataset.dev_y is None:
        raise ConfigError("cv.folds", f"data '{dataset.name}' keeps no raw training rows to cut folds from")
    n = len(dataset.dev_y)
    if dataset.class_names:
        counts = np.bincount(dataset.dev_y.astype(int), minlength=dataset.n_classes)
        smallest = int(np.argmin(counts))
        if folds > counts[smallest]:
            raise ConfigError(
                "cv.folds",
                f"{folds} is more than the {counts[smallest]} rows of the smallest class "
                f"'{dataset.class_names[smallest]}' in train + validation; use 2..{counts[smallest]}",
            )
    elif folds > n:
        raise ConfigError("cv.folds", f"{folds} is more than the {n} rows of train + validation; use 2..{n}")


def make_folds(dataset: Dataset, folds: int, seed: int) -> list[Dataset]:
    """One Dataset per fold: ``x_train``/``x_val`` are that fold's rows, preprocessed by a
    ``FeaturePreprocessor`` (and, for regression, a target scaler) fitted on the fold's training
    rows only; the test arrays are empty. ``rows`` gives each part's source row numbers."""
    check_fold_count(dataset, folds)
    frame, y = dataset.dev_frame, np.asarray(dataset.dev_y)
    source = np.concatenate([dataset.rows.get("train", []), dataset.rows.get("val", [])]).astype(int)
    if dataset.class_names:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    base = dataset.preprocessor
    out = []
    for k, (train, val) in enumerate(splitter.split(np.zeros(len(y)), y)):
        pre = FeaturePreprocessor(base.numeric, base.categorical).fit(frame.iloc[train])
        scaler = None
        if not dataset.class_names:
            scaler = StandardScaler().fit(y[train].reshape(-1, 1))
        out.append(
            dataclasses.replace(
                dataset,
                x_train=pre.transform(frame.iloc[train]),
                y_train=y[train],
                x_val=pre.transform(frame.iloc[val]),
                y_val=y[val],
                x_test=np.zeros((0, len(pre.feature_names_)), dtype=np.float32),
                y_test=y[:0],
                feature_names=list(pre.feature_names_),
                preprocessor=pre,
                target_scaler=scaler,
                info={**dataset.info, "fold": k},
                dev_frame=None,
                dev_y=None,
                rows={"train": source[train], "val": source[val]},
            )
        )
    return out
