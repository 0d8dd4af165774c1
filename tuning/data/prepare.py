"""Turn a raw table into a Dataset: task, label encoding, seeded splits, leak-free preprocessing."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from tuning.config.schema import SplitConfig
from tuning.config.tasks import TASKS
from tuning.data.dataset import Dataset
from tuning.data.preprocess import (
    FeaturePreprocessor,
    check_numbers,
    choose_columns,
    column_kind,
    require_columns,
)
from tuning.data.table import check_target
from tuning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Integer targets with at most this many distinct values are read as class labels.
MAX_INTEGER_CLASSES = 20


def check_task(task: Any) -> str | None:
    """``data.task`` validated: one of TASKS, or None to infer it."""
    if task is None or task == "":
        return None
    if task not in TASKS:
        raise ConfigError("data.task", f"'{task}' is not one of: {', '.join(TASKS)} (or null to infer)")
    return str(task)


def infer_task(y: pd.Series) -> str:
    """The task a target implies (missing values already removed).

    Text, category or bool labels: binary for 2 classes, else multiclass. Numbers: binary for
    2 distinct values, multiclass for whole numbers with at most 20 distinct values, else
    regression.
    """
    n_unique = y.nunique()
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        return "binary" if n_unique == 2 else "multiclass"
    if n_unique == 2:
        return "binary"
    values = y.to_numpy(dtype=np.float64)
    if n_unique <= MAX_INTEGER_CLASSES and bool(np.all(np.mod(values, 1) == 0)):
        return "multiclass"
    return "regression"


def label_name(value: Any) -> str:
    """A class label as text; whole floats drop their '.0' so 1 and 1.0 name one class."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _examples(y: pd.Series, n: int = 5) -> str:
    values = [label_name(v) for v in y.unique()[:n]]
    return ", ".join(f"'{v}'" for v in values) + (", ..." if y.nunique() > n else "")


def _check_numeric(y: pd.Series, target: str, key: str) -> None:
    if not pd.api.types.is_numeric_dtype(y.dtype) or isinstance(y.dtype, pd.CategoricalDtype):
        raise DataError(
            key,
            f"a regression target must be numeric, but '{target}' holds {y.dtype} values "
            f"such as {_examples(y)}",
        )


def resolve_task(y: pd.Series, target: str, task: str | None) -> str:
    """The configured task checked against the target, or the inferred one."""
    n_unique = y.nunique()
    if n_unique < 2:
        raise DataError("data.target", f"'{target}' has a single value ({_examples(y)}): nothing to learn")
    if task is None:
        task = infer_task(y)
        log.info("task inferred from '%s': %s (%d distinct values)", target, task, n_unique)
    if task == "regression":
        _check_numeric(y, target, "data.target")
    elif task == "binary" and n_unique != 2:
        raise DataError(
            "data.task",
            f"binary needs exactly 2 classes, '{target}' has {n_unique} ({_examples(y)}); "
            "use data.task=multiclass",
        )
    return task


def class_order(y: pd.Series) -> list[str]:
    """Class names: category order for categoricals, else sorted labels (numbers numerically)."""
    if isinstance(y.dtype, pd.CategoricalDtype):
        seen = set(y.unique())
        values = [c for c in y.cat.categories if c in seen]
    else:
        values = list(y.unique())
        try:
            values = sorted(values)
        except TypeError:  # mixed types in an object column
            values = sorted(values, key=str)
    return list(dict.fromkeys(label_name(v) for v in values))


def encode_labels(y: pd.Series, class_names: list[str], *, key: str) -> np.ndarray:
    """Class indices of ``y`` (int32); labels outside ``class_names`` fail under ``key``."""
    index = {name: i for i, name in enumerate(class_names)}
    names = y.map(label_name)
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(
            key,
            f"target labels not in the training data: {', '.join(unknown)}; known: {', '.join(class_names)}",
        )
    encoded: np.ndarray = names.map(index).to_numpy(dtype=np.int32)
    return encoded


def drop_missing_target(frame: pd.DataFrame, target: str, *, where: str, key: str) -> pd.DataFrame:
    """Rows with a target value only (logged with a count); none left is a DataError."""
    missing = frame[target].isna()
    if missing.all():
        raise DataError(key, f"target '{target}' has no values in {where}: all {len(frame)} rows are missing")
    if missing.any():
        log.warning(
            "dropped %d of %d rows of %s with no '%s' value", int(missing.sum()), len(frame), where, target
        )
    return frame.loc[~missing].reset_index(drop=True)


def split_indices(
    y: np.ndarray,
    *,
    class_names: list[str] | None,
    val: float,
    test: float,
    seed: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train / validation / test row indices, stratified when ``class_names`` is set.

    ``test`` == 0 means the test rows come from elsewhere: the test index is then empty.
    """
    n = len(y)
    stratify = y if class_names else None
    # Row counts, not fractions, go to train_test_split: both fractions are of all rows, and
    # 0.1 / 0.7 * 140 = 20.000000000000004 must not round up to 21.
    n_test, n_val = _count(test, n), _count(val, n)
    n_train = n - n_test - n_val
    minimum = len(class_names) if class_names else 1
    sizes = {"train": n_train, "val": n_val, **({"test": n_test} if test else {})}
    if min(sizes.values()) < minimum:
        fractions = f"split.val={val}" + (f", split.test={test}" if test else "")
        counts = ", ".join(f"{part} {count}" for part, count in sizes.items())
        per_class = " (one row per class)" if class_names else ""
        raise DataError(
            where,
            f"{n} rows are too few for the splits ({fractions}): {counts}; "
            f"each split needs at least {minimum} row(s){per_class}",
        )
    if class_names:
        _check_class_sizes(y, class_names, need=3 if test else 2)

    idx = np.arange(n)
    if not test:
        idx_train, idx_val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
        return idx_train, idx_val, np.array([], dtype=int)
    idx_rest, idx_test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=stratify)
    rest_strat = None
    if class_names:
        # A class can lose all but one row to the test split when split.test is large.
        _check_class_sizes(y[idx_rest], class_names, need=2, after=" left after taking the test split")
        rest_strat = y[idx_rest]
    idx_train, idx_val = train_test_split(idx_rest, test_size=n_val, random_state=seed, stratify=rest_strat)
    return idx_train, idx_val, idx_test


def _count(fraction: float, n: int) -> int:
    """Rows a fraction of ``n`` takes, rounded up like scikit-learn, ignoring float noise."""
    return math.ceil(round(fraction * n, 6))


def _check_class_sizes(y: np.ndarray, class_names: list[str], *, need: int, after: str = "") -> None:
    counts = np.bincount(y, minlength=len(class_names))
    smallest = int(np.argmin(counts))
    if counts[smallest] < need:
        raise DataError(
            "data.target",
            f"class '{class_names[smallest]}' has only {counts[smallest]} row(s){after}; "
            f"a stratified split needs at least {need} per class "
            "(add rows of that class, remove them, or lower split.test)",
        )


def prepare(
    frame: pd.DataFrame,
    target: str,
    *,
    name: str,
    split: SplitConfig,
    seed: int,
    task: str | None = None,
    test_frame: pd.DataFrame | None = None,
    where: str = "the data",
) -> Dataset:
    """Split ``frame`` into train / validation / test and fit preprocessing on train only.

    Args:
        frame, target: raw table holding the features, and the name of its target column.
        name: data set name (used for the study name and logs).
        split: the validation and test fractions of the rows (checked when the config was parsed).
        seed: seeds the (stratified, for classification) splits.
        task: ``binary``, ``multiclass`` or ``regression``; inferred from the target when None.
        test_frame: a fixed test table; ``split.test`` is then ignored and ``split.val`` is a
            fraction of ``frame``.
        where: the data's origin (a file path) for messages and row-count errors.
    """
    val, test = split.val, (0.0 if test_frame is not None else split.test)
    features, y, resolved, class_names = _targets(frame, target, task, where=where)
    numeric, categorical, dropped = choose_columns(features)
    idx_train, idx_val, idx_test = split_indices(
        y, class_names=class_names, val=val, test=test, seed=seed, where=where
    )
    pre = FeaturePreprocessor(numeric, categorical).fit(features.iloc[idx_train])
    scaler = _target_scaler(y[idx_train]) if class_names is None else None
    x_test, y_test = (
        (pre.transform(features.iloc[idx_test]), y[idx_test])
        if test_frame is None
        else _fixed_test(test_frame, target, pre, class_names)
    )
    info = {"rows": len(features), "rows_dropped": len(frame) - len(features), "columns_dropped": dropped}
    fixed = test_frame is not None
    info |= _columns_and_split(pre, task in (None, ""), class_names, val, "file" if fixed else test)
    idx_dev = np.concatenate([idx_train, idx_val])
    return Dataset(
        name=name,
        task=resolved,  # type: ignore[arg-type]
        x_train=pre.transform(features.iloc[idx_train]),
        y_train=y[idx_train],
        x_val=pre.transform(features.iloc[idx_val]),
        y_val=y[idx_val],
        x_test=x_test,
        y_test=y_test,
        target=target,
        columns=pre.columns,
        feature_names=list(pre.feature_names_),
        class_names=class_names,
        preprocessor=pre,
        target_scaler=scaler,
        info=info,
        dev_frame=features.iloc[idx_dev].reset_index(drop=True),
        dev_y=y[idx_dev],
        rows={"train": idx_train, "val": idx_val, "test": idx_test},
    )


def _target_scaler(y_train: np.ndarray) -> StandardScaler:
    """Regression trains on the standardized target (fitted on the training rows only, as
    scikit-learn's TransformedTargetRegressor does): a target in the thousands would make a
    mean-squared-error loss huge and SGD diverge, and huber's delta would mean nothing."""
    return StandardScaler().fit(y_train.reshape(-1, 1))


def _columns_and_split(
    pre: FeaturePreprocessor, inferred: bool, class_names: list[str] | None, val: float, test: Any
) -> dict[str, Any]:
    """What the data summary says of the columns, the task and the split."""
    return {
        "numeric_columns": list(pre.numeric),
        "categorical_columns": list(pre.categorical),
        "task_inferred": inferred,
        "stratified": class_names is not None,
        "split": {"val": val, "test": test},
    }


def _targets(
    frame: pd.DataFrame, target: str, task: str | None, *, where: str
) -> tuple[pd.DataFrame, np.ndarray, str, list[str] | None]:
    """The features of the rows with a target, the encoded target, the task and the class names
    (None: regression)."""
    task = check_task(task)
    check_target(frame, target, where=where)
    # Infinities would stop the scaler with a traceback; named here, by their file rows.
    check_numbers(frame, _number_features(frame, target), key="data.path", where=where)
    frame = drop_missing_target(frame, target, where=where, key="data.target")
    y_raw = frame[target]
    resolved = resolve_task(y_raw, target, task)
    features = frame.drop(columns=[target])
    if resolved == "regression":
        return features, y_raw.to_numpy(dtype=np.float32), resolved, None
    class_names = class_order(y_raw)
    return features, encode_labels(y_raw, class_names, key="data.target"), resolved, class_names


def _number_features(frame: pd.DataFrame, target: str) -> list[str]:
    return [c for c in frame.columns if c != target and column_kind(frame[c]) == "numeric"]


def _fixed_test(
    test_frame: pd.DataFrame,
    target: str,
    pre: FeaturePreprocessor,
    class_names: list[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of the ``data.test_path`` table, encoded like the training data."""
    key = "data.test_path"
    if target not in test_frame.columns:
        raise DataError(
            key, f"target column '{target}' not found; columns: {', '.join(map(str, test_frame.columns))}"
        )
    require_columns(test_frame, pre.columns, key=key)
    check_numbers(test_frame, pre.numeric, key=key, where="the test file")  # rows as in the file
    test_frame = drop_missing_target(test_frame, target, where="the test file", key=key)
    y_raw = test_frame[target]
    if class_names is None:
        _check_numeric(y_raw, target, key)
        y = y_raw.to_numpy(dtype=np.float32)
    else:
        y = encode_labels(y_raw, class_names, key=key)
    return pre.transform(test_frame), y
