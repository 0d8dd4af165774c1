"""The final model: refit the best trial's settings, evaluate once on the test split, save, load, predict.

Training goes through the trial's own pieces (``new_model``, ``targets``, ``fit_model``,
``run_trial``), so the final model is built and fitted exactly as the search's models were.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from tuning.config import for_task, validate, validate_for_task
from tuning.data import Dataset, load_dataset, transform_features
from tuning.errors import ConfigError, DataError
from tuning.files import atomic_text
from tuning.metrics import gap
from tuning.space import Hyperparameters
from tuning.tasks import METRICS

if TYPE_CHECKING:  # TensorFlow is imported where a model is built or loaded, not for path checks
    import keras

    from tuning.fit import FitResult

MODEL_FILE, PREPROCESSING_FILE, META_FILE = "model.keras", "preprocessing.joblib", "meta.json"
METRICS_FILE, HISTORY_FILE = "metrics.csv", "history.csv"
META_FORMAT = 1


@dataclass
class FinalModel:
    """A trained final model, the data it came from and how it measures."""

    model: keras.Model
    dataset: Dataset
    hp: Hyperparameters
    refit: bool
    epochs: int
    seed: int
    result: FitResult
    test: dict[str, float]
    search: dict[str, Any]
    study: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        return comparison_table(self)


def refit_epochs(best_epoch: int, n_train: int, n_val: int, batch_size: int) -> int:
    """Epochs on train + validation that make as many weight updates as the best trial made
    up to its best epoch.

    The search found that ``best_epoch`` passes over ``n_train`` rows, i.e. ``best_epoch *
    ceil(n_train / batch_size)`` updates, generalize best. Early stopping regularizes through
    the number of updates (with a fixed learning rate it acts like an L2 penalty whose
    strength falls as updates grow: Goodfellow et al., Deep Learning, 7.8), so keeping the
    update count keeps the regularization the search chose. Each pass over the larger set
    makes more updates, hence fewer passes: never fewer than one.
    """
    updates = best_epoch * math.ceil(n_train / batch_size)
    per_epoch = math.ceil((n_train + n_val) / batch_size)
    return max(1, round(updates / per_epoch))


def check_columns(dataset: Dataset, hp: Hyperparameters, best: Mapping[str, Any], source: str) -> None:
    """Fail when the data is not what the best trial's model was made for.

    A best.yaml that lists its ``columns`` (and ``class_names``) is compared exactly; one that
    does not is compared through the best trial's parameter count, which follows from the
    number of features and classes.
    """
    columns = best.get("columns")
    if columns is not None and list(columns) != list(dataset.columns):
        raise DataError(
            "data",
            f"{source} was made for the columns {', '.join(map(str, columns))}; "
            f"this data has {', '.join(dataset.columns)}",
        )
    classes = best.get("class_names")
    if classes is not None and dataset.class_names is not None and list(classes) != dataset.class_names:
        raise DataError(
            "data",
            f"{source} was made for the classes {', '.join(map(str, classes))}; "
            f"this data has {', '.join(dataset.class_names)}",
        )
    expected = best.get("n_params")
    if isinstance(expected, int) and not isinstance(expected, bool):
        from tuning.fit import fresh_session
        from tuning.trial import new_model

        actual = int(new_model(hp, dataset).count_params())
        fresh_session()
        if actual != expected:
            raise DataError(
                "data",
                f"{source} was made for other columns: its best model had {expected} weights, this "
                f"data gives {actual} ({dataset.n_features} features from {', '.join(dataset.columns)})",
            )


def train_final(settings: Mapping[str, Any], hp: Hyperparameters, *, source: str = "best.yaml") -> FinalModel:
    """Load the data, train the final model as configured, and evaluate it once on the test split.

    ``final.refit`` true: a fresh model on train + validation for :func:`refit_epochs` epochs
    (or ``final.epochs``); false: exactly the trial (train split, early stopping on validation).
    The weights are seeded as the best trial's were: ``seed + best.trial``.
    """
    from tuning.fit import evaluate, fit_model, fresh_session, seed_everything
    from tuning.trial import new_model, run_trial, targets

    best = dict(settings["best"])
    final = settings.get("final") or {}
    seed = int(settings["seed"])
    trial_seed = seed + int(best["trial"])
    dataset = load_dataset(settings["data"], settings["split"], seed)
    validate_for_task(settings, validate(settings), dataset.task)
    settings = for_task(settings, dataset.task)
    check_columns(dataset, hp, best, source)
    training = settings["training"]
    refit = bool(final.get("refit", True))
    start = time.perf_counter()
    if refit:
        epochs = final.get("epochs") or refit_epochs(
            int(best["best_epoch"]), len(dataset.y_train), len(dataset.y_val), hp.batch_size
        )
        fresh_session()
        seed_everything(trial_seed, bool(training.get("deterministic", True)))
        model = new_model(hp, dataset, int(training.get("steps_per_execution", 1)))
        x = np.concatenate([dataset.x_train, dataset.x_val])
        y = np.concatenate([dataset.y_train, dataset.y_val])
        result = fit_model(
            model, x, targets(y, hp, dataset), epochs=int(epochs), batch_size=hp.batch_size, patience=None
        )
    else:
        model, result = run_trial(hp, dataset, training, seed=trial_seed)
        epochs = result.epochs_trained
    if result.diverged_at is not None:
        raise ConfigError("final", f"the loss became NaN at epoch {result.diverged_at + 1}; nothing saved")
    # The one and only look at the test split.
    test = evaluate(model, dataset.x_test, targets(dataset.y_test, hp, dataset), hp.batch_size)
    if dataset.target_scaler is not None:  # saved and served in the target's units
        from tuning.model import in_target_units

        model = in_target_units(model, *dataset.target_units)
    return FinalModel(
        model=model,
        dataset=dataset,
        hp=hp,
        refit=refit,
        epochs=int(epochs),
        seed=trial_seed,
        result=result,
        test=test,
        search=best,
        study=str(settings["study"]["name"]),
        info={"seconds": round(time.perf_counter() - start, 3), "sweep_seed": seed},
    )


def comparison_table(final: FinalModel) -> pd.DataFrame:
    """Per metric: what the search saw (train, validation, their gap) beside the final model's
    training rows, validation (without refit), test and test gap. Gaps are positive when the
    second value is worse."""
    names = ("loss", *METRICS[final.dataset.task])
    search = final.search
    train_label = "final train+val" if final.refit else "final train"
    rows = {}
    for name in names:
        train = final.result.train.get(name, math.nan)
        row = {
            "search train": search.get(f"train_{name}", math.nan),
            "search val": search.get(f"val_{name}", math.nan),
            train_label: train,
        }
        if not final.refit:
            row["final val"] = final.result.val.get(name, math.nan)
        row["test"] = final.test.get(name, math.nan)
        row["search gap"] = search.get(f"gap_{name}", math.nan)
        row["test gap"] = gap(train, row["test"], name)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)


def meta(final: FinalModel) -> dict[str, Any]:
    """What ``tuning predict`` needs to turn raw rows into predictions, and where the model came from."""
    import keras

    data = final.dataset
    return {
        "format": META_FORMAT,
        "study": final.study,
        "data": data.name,
        "task": data.task,
        "target": data.target,
        "columns": list(data.columns),
        "feature_names": list(data.feature_names),
        "class_names": data.class_names,
        # The model predicts in the target's units; it trained on (y - mean) / scale.
        "target_scaling": (
            dict(zip(("mean", "scale"), data.target_units, strict=True)) if data.target_scaler else None
        ),
        "best_trial": int(final.search["trial"]),
        "refit": final.refit,
        "epochs": final.epochs,
        "seed": final.seed,
        "rows": {
            "train": len(data.y_train) + (len(data.y_val) if final.refit else 0),
            "test": len(data.y_test),
        },
        "hyperparameters": final.hp.as_config(),
        "metrics": {
            "train": final.result.train,
            "val": final.result.val,
            "test": final.test,
            "search_val": {k[4:]: v for k, v in final.search.items() if k.startswith("val_")},
        },
        "keras_version": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save_final(final: FinalModel, folder: str | Path) -> Path:
    """Write model, preprocessing, meta, metrics table and history into ``folder``.

    Everything is written into a staging folder first and moved in place file by file,
    ``meta.json`` last: an interrupted save never leaves a new model with an old description.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        final.model.save(staging / MODEL_FILE)
        joblib.dump(final.dataset.preprocessor, staging / PREPROCESSING_FILE)
        final.table.to_csv(staging / METRICS_FILE, index_label="metric")
        history = pd.DataFrame(final.result.history)
        history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
        history.to_csv(staging / HISTORY_FILE)
        write_json(staging / META_FILE, meta(final))
        for name in (MODEL_FILE, PREPROCESSING_FILE, METRICS_FILE, HISTORY_FILE, META_FILE):
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically, like ``tuning.export.write_yaml``."""
    with atomic_text(path) as fh:
        json.dump(data, fh, indent=2, default=float)
        fh.write("\n")


# --- loading and predicting ----------------------------------------------------------------


@dataclass
class SavedModel:
    """A final model read back from its folder."""

    model: keras.Model
    preprocessor: Any
    meta: dict[str, Any]
    folder: Path


def model_folder(path: str | Path) -> Path:
    """The folder of a saved final model, from the folder itself or its ``model.keras``."""
    path = Path(path)
    folder = path.parent if path.suffix == ".keras" else path
    if not (folder / MODEL_FILE).is_file():
        raise ConfigError("model", f"no {MODEL_FILE} in {folder}; train one with `tuning train study=NAME`")
    for name in (PREPROCESSING_FILE, META_FILE):
        if not (folder / name).is_file():
            raise ConfigError("model", f"{folder} has no {name}; train the model again with `tuning train`")
    return folder


def load_final(path: str | Path) -> SavedModel:
    """Read a final model with its fitted preprocessing and label names.

    The preprocessing is a pickle: load only folders you trust.
    """
    folder = model_folder(path)
    try:
        info = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("model", f"cannot read {folder / META_FILE}: {err}") from None
    for key in ("task", "target", "columns", "class_names"):
        if key not in info:
            raise ConfigError("model", f"{folder / META_FILE} has no '{key}'; train the model again")
    model = _load_model(folder / MODEL_FILE)
    preprocessor = _load_preprocessing(folder / PREPROCESSING_FILE)
    return SavedModel(model, preprocessor, info, folder)


# Damaged, or written by library versions that cannot be read here: the way out is the same.
DAMAGED = (
    "cannot be loaded ({}); train the model again with `tuning train`, or restore the folder from a backup"
)


def _load_model(path: Path) -> keras.Model:
    """The Keras model of ``path``; a damaged file is a ConfigError naming it."""
    import zipfile

    import keras

    # A .keras file is a zip archive with CRCs: a cut or overwritten file is caught here, by name,
    # before Keras reports it as whatever its reader trips over.
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ConfigError(
            "model", f"{path} " + DAMAGED.format(f"not a readable .keras archive: {err}")
        ) from None
    if broken is not None:
        raise ConfigError("model", f"{path} " + DAMAGED.format(f"'{broken}' fails its checksum")) from None
    missing = sorted({"config.json", "model.weights.h5"} - names)
    if missing:
        raise ConfigError("model", f"{path} " + DAMAGED.format(f"no {', '.join(missing)} inside")) from None
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError) as err:  # a config or weights Keras cannot rebuild
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError("model", f"{path} " + DAMAGED.format(first)) from None


def _load_preprocessing(path: Path) -> Any:
    """The fitted preprocessing of ``path``; a damaged file is a ConfigError naming it."""
    import pickle

    try:
        preprocessor = joblib.load(path)
    # What unpickling bytes that are not (or no longer) a complete pickle raises; a bug in our
    # own code cannot run from inside joblib.load, so these all mean "the file is damaged".
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        ImportError,
    ) as err:
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError("model", f"{path} " + DAMAGED.format(first)) from None
    if not callable(getattr(preprocessor, "transform", None)):
        raise ConfigError(
            "model",
            f"{path} " + DAMAGED.format(f"holds a {type(preprocessor).__name__}, not a preprocessing"),
        )
    return preprocessor


def predict_frame(saved: SavedModel, frame: pd.DataFrame, *, key: str = "data.path") -> pd.DataFrame:
    """``frame`` with the predictions appended: ``predicted_<target>``, and for classification
    ``probability_<class>`` per class.

    Rows go through the training preprocessing: missing values imputed, unseen categories
    encoded as none of the known ones; a missing column is a DataError under ``key``.
    """
    if frame.empty:
        raise DataError(key, "no rows to predict")
    info = saved.meta
    x = transform_features(saved.preprocessor, info["columns"], frame, key=key)
    raw = np.asarray(saved.model.predict(x, batch_size=1024, verbose=0), dtype=np.float64)
    out = frame.copy()
    label = f"predicted_{info['target']}"
    if info["task"] == "regression":
        out[label] = raw.reshape(-1)
        return out
    classes = list(info["class_names"])
    probs = np.column_stack([1.0 - raw[:, 0], raw[:, 0]]) if info["task"] == "binary" else raw
    out[label] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    for i, name in enumerate(classes):
        out[f"probability_{name}"] = probs[:, i]
    return out
