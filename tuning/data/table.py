"""User tables: read a CSV or Parquet file with pandas and pick its columns."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from tuning.config.data import DataConfig
from tuning.errors import DataError

# File suffix -> reader. Anything else is refused before reading.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def one_line(err: BaseException) -> str:
    """An exception's message on one line (pandas parser messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def resolve_path(path: str | Path) -> Path:
    """``path`` as given, or relative to where the command started if Hydra changed directory."""
    file = Path(path).expanduser()
    if file.is_absolute() or file.exists():
        return file
    try:  # Hydra is optional here: plain library use has no original directory.
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd
    except ImportError:
        return file
    if HydraConfig.initialized():
        candidate = Path(get_original_cwd()) / file
        if candidate.exists():
            return candidate
    return file


def read_table(
    path: str | Path, *, key: str = "data.path", sep: str | None = None, nullable: bool = False
) -> pd.DataFrame:
    """Read a .csv/.tsv/.txt or .parquet/.pq file; any failure is a DataError under ``key``.

    Args:
        path: the file; relative paths are read from the working directory.
        key: config key named in errors (``data.path`` or ``data.test_path``).
        sep: column separator for text files; None means tab for .tsv, else comma.
        nullable: pandas' nullable dtypes, so a whole-number column with a missing value stays
            whole numbers (``Int64``) instead of becoming floats: for writing rows back as read.
    """
    file = resolve_path(path)
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            key,
            f"unknown format '{suffix or file.name}' of {path}; use one of: {', '.join(FORMATS)}",
        )
    if not file.exists():
        raise DataError(key, f"file not found: {file.absolute()}")
    if not file.is_file():
        raise DataError(key, f"not a file: {file.absolute()}")
    sep = sep or ("\t" if suffix == ".tsv" else ",")
    if FORMATS[suffix] == "csv":
        check_row_lengths(file, sep, key=key)
    try:
        backend: Any = {"dtype_backend": "numpy_nullable"} if nullable else {}
        if FORMATS[suffix] == "parquet":
            frame = pd.read_parquet(file, **backend)
        else:
            # index_col=False: a row with one value too many is not a reason to make the first
            # column the index (every value would shift one column left without a word).
            frame = pd.read_csv(file, sep=sep, index_col=False, **backend)
    except Exception as err:  # parser, encoding, arrow and OS errors all mean "unreadable"
        raise DataError(key, f"cannot read {file}: {one_line(err)}") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def check_row_lengths(file: Path, sep: str, *, key: str) -> None:
    """Refuse a text table whose rows do not all have as many values as its header.

    pandas fills a short row with missing values and drops or shifts a long row's extra
    values; either way values would land in the wrong columns. Blank lines are skipped, as
    pandas does. Separators of more than one character (regular expressions) are not checked.
    """
    if len(sep) != 1:
        return
    with _open_text(file, key=key) as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            header = next(reader, None)
            for row in reader if header is not None else ():
                assert header is not None
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        key,
                        f"{file}: line {reader.line_num} has {len(row)} values but the header has "
                        f"{len(header)} columns; every row needs one value per column (empty for missing; "
                        f"quote values that contain '{sep}')",
                    )
        except csv.Error:
            return  # a line the csv module cannot split: pandas then names what it cannot parse


def _open_text(file: Path, *, key: str) -> TextIO:
    """``file`` opened for csv reading; only a failure to open it reads as "cannot read"."""
    try:
        return file.open(newline="", encoding="utf-8", errors="replace")
    except OSError as err:
        raise DataError(key, f"cannot read {file}: {err.strerror or err}") from None


def check_target(frame: pd.DataFrame, target: str, *, where: str = "the data") -> None:
    """Fail with the list of columns when ``target`` is not one of them."""
    if target not in frame.columns:
        raise DataError(
            "data.target",
            f"column '{target}' not found in {where}; columns: {', '.join(map(str, frame.columns))}",
        )


def select_columns(
    frame: pd.DataFrame,
    target: str,
    *,
    features: Sequence[str] | None = None,
    drop: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Keep only ``features`` (all columns when None), minus ``drop``, plus the target."""
    check_target(frame, target)
    for key, names in (("data.features", features), ("data.drop", drop)):
        unknown = [c for c in names or [] if c not in frame.columns]
        if unknown:
            raise DataError(
                key,
                f"unknown columns: {', '.join(unknown)}; columns: {', '.join(frame.columns)}",
            )
    if target in (drop or []):
        raise DataError("data.drop", f"cannot drop the target column '{target}'")
    kept = [c for c in (features if features is not None else frame.columns) if c != target]
    kept = [c for c in kept if c not in (drop or [])]
    return frame[[*dict.fromkeys(kept), target]]


def load_csv(data: DataConfig, seed: int) -> tuple[pd.DataFrame, str]:
    """The ``csv`` source: ``data.path`` read as a table, ``data.target`` its label column."""
    del seed  # a file is the same whatever the seed
    path = data.required("path", "customers.csv")
    target = data.required("target", "churned")
    frame = read_table(path, key="data.path", sep=data.sep)
    check_target(frame, target, where=str(path))
    return frame, target


def read_test_table(data: DataConfig) -> pd.DataFrame | None:
    """The fixed test file ``data.test_path``, read like the main file, or None when unset."""
    if data.test_path is None:
        return None
    return read_table(data.test_path, key="data.test_path", sep=data.sep)
