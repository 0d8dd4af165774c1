"""`tuning predict`: a saved final model applied to new raw rows, predictions written as CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuning.commands.support import fail
from tuning.errors import ConfigError
from tuning.files import atomic_text, check_writable_file

USAGE = """\
usage: tuning predict model=PATH data.path=ROWS [output=PATH] [data.sep=SEP]
       tuning predict study=NAME data.path=ROWS [output=PATH] [paths.root=DIR]

Applies a final model (from `tuning train`) to the raw rows of a CSV/TSV/Parquet file: the
training preprocessing handles missing values and unseen categories; the model's columns must
be present (extra ones are kept in the output and ignored by the model).

  model=PATH      experiments/NAME/final/model.keras, or its folder
  study=NAME      short for model=<paths.root>/NAME/final
  data.path=ROWS  the rows to predict
  output=PATH     the CSV to write (default: ROWS' folder, <stem>.predictions.csv)

Output: the input columns, then predicted_<target> and, for classification, probability_<class>.

example:
  tuning predict model=experiments/plants/final/model.keras data.path=new_plants.csv"""

KEYS = ("model", "study", "data.path", "output", "data.sep", "paths.root")


def parse(args: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments; unknown keys and missing ones are ConfigErrors."""
    values: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise ConfigError(
                key if sep else arg, f"unknown argument; allowed: {', '.join(f'{k}=...' for k in KEYS)}"
            )
        values[key] = value
    if "model" in values and "study" in values:
        raise ConfigError("model", "give model=PATH or study=NAME, not both")
    if "study" in values:
        values["model"] = str(Path(values.get("paths.root") or "experiments") / values.pop("study") / "final")
    if not values.get("model"):
        raise ConfigError("model", "is required: model=experiments/NAME/final/model.keras (or study=NAME)")
    if not values.get("data.path"):
        raise ConfigError("data.path", "is required: data.path=new_rows.csv")
    return values


def default_output(rows: Path) -> Path:
    """``new_plants.csv`` -> ``new_plants.predictions.csv`` beside it."""
    return rows.with_name(f"{rows.stem}.predictions.csv")


def run(values: dict[str, str]) -> Path:
    """Read the rows, predict, write the CSV atomically; returns its path."""
    import pandas as pd

    from tuning.data.table import read_table
    from tuning.final.saved import load_final, model_folder, predict_frame
    from tuning.model.backend import import_tensorflow_quietly

    rows = Path(values["data.path"])
    output = Path(values.get("output") or default_output(rows))
    if output.resolve() == rows.resolve():
        raise ConfigError("output", f"{output} is the input file; choose another output path")
    check_writable_file(output, "output")
    folder = model_folder(values["model"])  # cheap checks first: TensorFlow loads with the model
    frame = read_table(rows, key="data.path", sep=values.get("data.sep"))
    import_tensorflow_quietly()
    saved = load_final(folder)
    predictions = predict_frame(saved, frame, key="data.path")
    # The rows go back out as they came in: read again with nullable dtypes, so a whole-number
    # column with a gap is written as 5, not 5.0 (the model saw the numeric reading above).
    as_read = read_table(rows, key="data.path", sep=values.get("data.sep"), nullable=True)
    added = [c for c in predictions.columns if c not in frame.columns]
    predictions = pd.concat([as_read, predictions[added].set_axis(as_read.index)], axis=1)
    try:
        with atomic_text(output, newline="") as fh:
            predictions.to_csv(fh, index=False)
    except OSError as err:  # disk full, folder removed meanwhile: atomic_text left nothing behind
        raise ConfigError("output", f"cannot write {output}: {err.strerror or err}") from None
    label = f"predicted_{saved.meta['target']}"
    summary = ""
    if saved.meta["task"] != "regression":
        counts = predictions[label].value_counts()
        summary = (
            " (" + ", ".join(f"{name}: {counts.get(name, 0)}" for name in saved.meta["class_names"]) + ")"
        )
    print(f"{len(predictions)} predictions of '{saved.meta['target']}'{summary} written to {output}")
    return output


def main(args: Sequence[str]) -> int:
    """``tuning predict model=PATH data.path=ROWS [output=PATH]``."""
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    try:
        run(parse(args))
    except ConfigError as err:
        fail(err)
    return 0
