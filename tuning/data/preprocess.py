"""Feature preprocessing: which columns to use, and the fitted map from raw rows to features.

Column choice (types, ID-like, empty) looks only at the feature columns' schema and
uniqueness, never at the target. Every value statistic (medians, means, scales,
categories) is learned in ``fit``, which is called on the training rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from tuning.data import pipeline
from tuning.errors import DataError

log = logging.getLogger(__name__)


def _is_text(dtype: Any) -> bool:
    return bool(pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype))


def column_kind(column: pd.Series) -> str | None:
    """``numeric``, ``categorical`` (text, category, bool) or None for unsupported types."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if _is_text(dtype):
        return "categorical"
    return None  # datetimes, intervals, complex...: no safe default encoding


def is_id_like(column: pd.Series) -> bool:
    """A text column with no missing values where every value differs (names, keys, UUIDs)."""
    if isinstance(column.dtype, pd.CategoricalDtype) or not _is_text(column.dtype):
        return False
    return len(column) > 1 and column.notna().all() and column.nunique() == len(column)


def choose_columns(features: pd.DataFrame) -> tuple[list[str], list[str], dict[str, str]]:
    """Split feature columns into numeric and categorical; drop the unusable ones with a warning.

    Returns:
        numeric columns, categorical columns, and ``{dropped column: reason}``.

    Raises:
        DataError: under ``data.features`` when no column is left.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    dropped: dict[str, str] = {}
    for name in features.columns:
        column = features[name]
        kind = column_kind(column)
        if kind is None:
            dropped[name] = f"unsupported type {column.dtype}"
        elif column.isna().all():
            dropped[name] = "no values"
        elif kind == "categorical" and is_id_like(column):
            dropped[name] = "ID-like: every value is a different string"
        elif kind == "numeric":
            numeric.append(name)
        else:
            categorical.append(name)
    for name, reason in dropped.items():
        log.warning("dropping column '%s' (%s)", name, reason)
    if not numeric and not categorical:
        why = "; ".join(f"'{n}': {r}" for n, r in dropped.items()) or "the table has only the target"
        raise DataError("data.features", f"no usable feature columns ({why})")
    return numeric, categorical, dropped


def check_numbers(frame: pd.DataFrame, columns: Sequence[str], *, key: str, where: str = "") -> None:
    """Refuse values of the number ``columns`` that are neither a number nor missing: the served
    model's own check (:func:`tuning.data.pipeline.check_numbers`), so training data, ``tuning
    predict`` and the served model refuse the same rows with the same words. Missing columns
    are left to :func:`require_columns`.

    Raises:
        DataError: under ``key``, naming the column, the first rows and their values.
    """
    try:
        pipeline.check_numbers(frame, [c for c in columns if c in frame.columns], where)
    except pipeline.RowsError as err:
        raise DataError(key, str(err)) from None


def to_number(x: Any) -> np.ndarray:
    """Raw values to float64, text that is not a number becoming NaN (then imputed).

    Commands refuse such text first (``check_numbers``); this stays lenient so that models
    saved before that check load and run unchanged.
    """
    frame = pd.DataFrame(x)
    numbers = frame.apply(pd.to_numeric, errors="coerce")
    array: np.ndarray = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return array


def to_text(x: Any) -> np.ndarray:
    """Raw values to strings with NaN for missing, so the same category reads the same
    whether it came from a CSV, a Parquet file or a category column."""
    values = np.asarray(pd.DataFrame(x), dtype=object)
    missing = pd.isna(values)
    text = values.astype(str).astype(object)
    text[missing] = np.nan
    return text


def build_transformer(numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    """Numeric: median-imputed and standardized. Categorical: mode-imputed and one-hot encoded,
    categories unseen in training ignored (all zeros)."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps = [
            ("number", FunctionTransformer(to_number, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
        transformers.append(("num", Pipeline(steps), list(numeric)))
    if categorical:
        steps = [
            ("text", FunctionTransformer(to_text, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        transformers.append(("cat", Pipeline(steps), list(categorical)))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], *, key: str = "input") -> None:
    """Fail naming every column of ``columns`` that ``frame`` lacks (the served model's check too)."""
    try:
        pipeline.require_columns(frame, columns)
    except pipeline.RowsError as err:
        raise DataError(key, str(err)) from None


class FeaturePreprocessor(TransformerMixin, BaseEstimator):
    """Raw table rows (a pandas frame with ``columns``) to a float32 feature matrix.

    Picklable with joblib; extra columns in the frame (the target, IDs) are ignored.

    Args:
        numeric: columns to impute (median) and standardize.
        categorical: columns to impute (most frequent) and one-hot encode.
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()) -> None:
        self.numeric = numeric
        self.categorical = categorical

    @property
    def columns(self) -> list[str]:
        """The raw input columns, in the order the features are built from."""
        return [*self.numeric, *self.categorical]

    def fit(self, frame: pd.DataFrame, y: Any = None) -> FeaturePreprocessor:
        """Learn imputation values, scaling and categories from ``frame`` (training rows)."""
        require_columns(frame, self.columns)
        self.transformer_ = build_transformer(self.numeric, self.categorical)
        self.transformer_.fit(frame[self.columns])
        try:
            names = self.transformer_.get_feature_names_out()
        except ValueError:  # short names collide (column 'a_b' vs 'a' = 'b'): prefix them
            self.transformer_.verbose_feature_names_out = True
            names = self.transformer_.get_feature_names_out()
        self.feature_names_ = [str(n) for n in names]
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Features for the rows of ``frame``; a DataError names any missing column."""
        check_is_fitted(self, "transformer_")
        require_columns(frame, self.columns)
        return np.asarray(self.transformer_.transform(frame[self.columns]), dtype=np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


def transform_features(
    preprocessor: Any, columns: Sequence[str], frame: pd.DataFrame, *, key: str = "input"
) -> np.ndarray:
    """Raw rows to the float32 features a model was trained on.

    Args:
        preprocessor: the fitted ``Dataset.preprocessor`` (anything with ``transform``).
        columns: the raw columns it needs (``Dataset.columns``).
        frame: rows to transform; extra columns are ignored.
        key: what the error names when columns are missing or a number column holds text or
            infinities (a file, ``input``...).
    """
    require_columns(frame, columns, key=key)
    check_numbers(frame, getattr(preprocessor, "numeric", ()), key=key)
    return np.asarray(preprocessor.transform(frame[list(columns)]), dtype=np.float32)
