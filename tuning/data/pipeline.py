"""Raw rows to predictions for a final model: the one function `tuning predict` and the MLflow pyfunc share,
and the one check of raw rows (missing columns, text or infinities in number columns) that the
data layer applies too (``tuning.data.preprocess`` turns its ``RowsError`` into a ``DataError``).

Self-contained on purpose (numpy and pandas only, no ``tuning`` import at run time; ``Payload``
is named for the type checker only): the MLflow model ships this file beside its code
(``code_paths``) and imports it as the top-level module ``pipeline``, so a served model needs
neither ``tuning`` nor a pickle. The fitted preprocessing is plain values (``pipeline.json``,
written by ``tuning.final.saved``): medians, means and scales of the number columns, the most
frequent value and the categories of the others, applied here exactly as scikit-learn applies
them (same float64 operations, same order). ``spec`` is that file's JSON as it is read (a
``Payload``): the served model, ``tuning predict`` and ``outputs`` with a pre-pipeline folder's
``meta.json`` (same ``task`` / ``target`` / ``class_names`` keys) all pass it as loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # for the type checker only: the shipped file imports nothing of tuning
    from tuning.payload import Payload

PIPELINE_FORMAT = 1


class RowsError(ValueError):
    """Rows the model refuses rather than guesses: a missing column, text or infinity in a number column."""


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Fail naming every column of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RowsError(f"missing columns: {', '.join(missing)} (needed: {', '.join(columns)})")


def check_numbers(frame: pd.DataFrame, columns: Sequence[str], where: str = "") -> None:
    """Refuse values of the number ``columns`` that are neither a number nor missing.

    Missing values are imputed as in training; text and infinities are refused, since imputing
    them would predict a row from medians without a word. Rows count from 1, in ``frame``'s order.
    ``where``: the rows' origin for the message (``the test file``).
    """
    origin = f" of {where}" if where else ""
    for name in columns:
        raw = frame[name]
        numbers = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
        numbers = numbers.astype("float64")
        text = raw.notna().to_numpy() & numbers.isna().to_numpy()
        infinite = np.isinf(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        for bad, what in ((text, "text that is not a number"), (infinite, "an infinite value")):
            rows = np.flatnonzero(bad)
            if rows.size:
                shown = ", ".join(f"row {i + 1}: {_shown(raw.iloc[i])}" for i in rows[:3])
                more = f" and {rows.size - 3} more" if rows.size > 3 else ""
                raise RowsError(
                    f"column '{name}'{origin} is a number column but has {what} ({shown}{more}); "
                    "allowed: numbers, or an empty cell for a missing value"
                )


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def features(spec: Payload, frame: pd.DataFrame) -> np.ndarray:
    """The float32 feature matrix the network was trained on, from raw rows.

    Number columns: median-imputed, then ``(x - mean) / scale``. Other columns: read as text,
    the most frequent value for a missing one, one-hot over the training categories (an unseen
    category is all zeros). Extra columns are ignored.
    """
    numeric: Mapping[str, Mapping[str, float]] = spec["numeric"]
    categorical: Mapping[str, Payload] = spec["categorical"]
    require_columns(frame, list(spec["columns"]))
    check_numbers(frame, list(numeric))
    blocks = []
    for name, fit in numeric.items():
        x = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        x = np.where(np.isnan(x), fit["median"], x)
        blocks.append(((x - fit["mean"]) / fit["scale"]).reshape(-1, 1))
    for name, fit in categorical.items():
        values = frame[name].to_numpy(dtype=object)
        missing = pd.isna(values)
        text = values.astype(str).astype(object)
        text[missing] = fit["mode"]
        categories = np.asarray(fit["categories"], dtype=object)
        blocks.append((text.reshape(-1, 1) == categories.reshape(1, -1)).astype(np.float64))
    return np.asarray(np.hstack(blocks), dtype=np.float32)


def outputs(raw: np.ndarray, spec: Payload, index: Any = None) -> pd.DataFrame:
    """The network's outputs as `tuning predict` writes them: ``predicted_<target>`` and, for
    classification, ``probability_<class>`` per class."""
    raw = np.asarray(raw, dtype=np.float64)
    label = f"predicted_{spec['target']}"
    if spec["task"] == "regression":
        return pd.DataFrame({label: raw.reshape(-1)}, index=index)
    classes = [str(c) for c in spec["class_names"]]
    probs = np.column_stack([1.0 - raw[:, 0], raw[:, 0]]) if spec["task"] == "binary" else raw
    out = pd.DataFrame({label: np.asarray(classes, dtype=object)[probs.argmax(axis=1)]}, index=index)
    for i, name in enumerate(classes):
        out[f"probability_{name}"] = probs[:, i]
    return out


def predict_rows(network: Any, spec: Payload, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions for the raw rows of ``frame`` (a ``RowsError`` for rows the model refuses).

    ``network`` is the saved Keras model (anything with ``predict``), ``spec`` the parsed
    ``pipeline.json``.
    """
    if frame.empty:
        raise RowsError("no rows to predict")
    x = features(spec, frame)
    return outputs(network.predict(x, batch_size=1024, verbose=0), spec, index=frame.index)
