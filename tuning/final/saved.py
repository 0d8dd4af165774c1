"""A final model on disk: save it (``meta.json`` last), read it back, apply it to raw rows."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd

from tuning.data import pipeline, transform_features
from tuning.errors import ConfigError, DataError
from tuning.files import atomic_text
from tuning.payload import Payload

if TYPE_CHECKING:  # TensorFlow is imported where a model is loaded, not for path checks
    import keras

    from tuning.data import Dataset
    from tuning.final.refit import FinalModel

MODEL_FILE, PREPROCESSING_FILE, META_FILE = "model.keras", "preprocessing.joblib", "meta.json"
# The preprocessing as plain values, read by tuning.data.pipeline (here and in the MLflow model).
PIPELINE_FILE = "pipeline.json"
METRICS_FILE, HISTORY_FILE = "metrics.csv", "history.csv"
META_FORMAT = 1


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
        "hyperparameters": final.hp.as_params() if final.hp.builder else final.hp.as_config(),
        # model=custom: its module is imported before loading, so the layers it registers exist.
        "builder": final.hp.builder,
        "metrics": {
            "train": final.result.train,
            "val": final.result.val,
            "test": final.test,
            "search_val": {k[4:]: v for k, v in final.search.items() if k.startswith("val_")},
        },
        # The final model beside its trial on the study's metric (tuning.final.check).
        "check": final.check.as_dict() if final.check is not None else None,
        "keras_version": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def pipeline_spec(data: Dataset) -> dict[str, Any]:
    """``pipeline.json``: what :mod:`tuning.data.pipeline` needs to turn raw rows into predictions,
    the fitted preprocessing as plain numbers and strings (read from the scikit-learn steps)."""
    steps = data.preprocessor.transformer_.named_transformers_
    numeric: dict[str, dict[str, float]] = {}
    if "num" in steps:
        impute, scale = steps["num"].named_steps["impute"], steps["num"].named_steps["scale"]
        for i, name in enumerate(data.preprocessor.numeric):
            numeric[str(name)] = {
                "median": float(impute.statistics_[i]),
                "mean": float(scale.mean_[i]),
                "scale": float(scale.scale_[i]),
            }
    categorical: dict[str, dict[str, Any]] = {}
    if "cat" in steps:
        impute, onehot = steps["cat"].named_steps["impute"], steps["cat"].named_steps["onehot"]
        for i, name in enumerate(data.preprocessor.categorical):
            categorical[str(name)] = {
                "mode": str(impute.statistics_[i]),
                "categories": [str(c) for c in onehot.categories_[i]],
            }
    return {
        "format": pipeline.PIPELINE_FORMAT,
        "task": data.task,
        "target": data.target,
        "class_names": data.class_names,
        "columns": list(data.columns),
        "numeric": numeric,
        "categorical": categorical,
    }


def serving_network(model: keras.Model) -> keras.Model:
    """The trained network without its training configuration (optimizer, loss, metrics).

    A new ``Sequential`` (or functional ``Model``) over the same trained layers, never compiled:
    ``model.keras`` then names built-in Keras objects only (for the built-in MLP), and
    ``keras.saving.load_model`` or MLflow load it in any process, without ``tuning``'s metric
    classes. (``keras.models.clone_model`` would compile the copy again.) A subclassed custom
    model is saved as it is: it needs its builder's module to load anyway.
    """
    import keras

    if isinstance(model, keras.Sequential):
        layers = [keras.Input(shape=model.input_shape[1:]), *model.layers]
        return keras.Sequential(layers, name=model.name)
    try:
        return keras.Model(model.inputs, model.outputs, name=model.name)
    except (AttributeError, ValueError):  # subclassed: no graph of inputs and outputs to rebuild
        return model


def save_final(final: FinalModel, folder: str | Path) -> Path:
    """Write model, preprocessing (pickled and as plain values), meta, metrics table and history
    into ``folder``.

    Everything is written into a staging folder first and moved in place file by file,
    ``meta.json`` last: an interrupted save never leaves a new model with an old description.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    names = (MODEL_FILE, PREPROCESSING_FILE, PIPELINE_FILE, METRICS_FILE, HISTORY_FILE, META_FILE)
    try:
        serving_network(final.model).save(staging / MODEL_FILE)
        joblib.dump(final.dataset.preprocessor, staging / PREPROCESSING_FILE)
        write_json(staging / PIPELINE_FILE, pipeline_spec(final.dataset))
        final.table.to_csv(staging / METRICS_FILE, index_label="metric")
        history = pd.DataFrame(final.result.history)
        history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
        history.to_csv(staging / HISTORY_FILE)
        write_json(staging / META_FILE, meta(final))
        for name in names:
            (staging / name).replace(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_json(path: Path, data: Payload) -> None:
    """Atomically, like ``tuning.final.best.write_yaml``."""
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
    # pipeline.json; None in folders saved before it existed (the pickled preprocessing is used).
    spec: dict[str, Any] | None = None


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
    if info.get("builder"):
        _import_builder_module(str(info["builder"]))
    model = _load_model(folder / MODEL_FILE)
    preprocessor = _load_preprocessing(folder / PREPROCESSING_FILE)
    return SavedModel(model, preprocessor, info, folder, _load_spec(folder / PIPELINE_FILE))


def _load_spec(path: Path) -> dict[str, Any] | None:
    """``pipeline.json``, checked for the keys prediction reads; None when the folder predates it."""
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("model", f"{path} " + DAMAGED.format(f"not readable JSON: {err}")) from None
    keys = ("format", "task", "target", "class_names", "columns", "numeric", "categorical")
    missing = [k for k in keys if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise ConfigError("model", f"{path} " + DAMAGED.format(f"no {', '.join(missing)}"))
    if spec["format"] != pipeline.PIPELINE_FORMAT:
        raise ConfigError(
            "model", f"{path} " + DAMAGED.format(f"format {spec['format']!r}, this tuning reads 1")
        )
    return dict(spec)


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


def _import_builder_module(builder: str) -> None:
    """Import a custom model's module: its ``@keras.saving.register_keras_serializable`` layers
    register themselves there, and Keras needs them to rebuild the saved model."""
    import importlib

    from tuning.config.model import on_path, split_path

    on_path()
    module = split_path(builder)[0]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            "model",
            f"the model was built by {builder}; its module '{module}' must be importable from the "
            f"working directory to load it ({err})",
        ) from None


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
    ``probability_<class>`` per class, from :func:`tuning.data.pipeline.predict_rows` (the
    function the MLflow model serves with).

    Rows go through the training preprocessing: missing values imputed, unseen categories
    encoded as none of the known ones; rows it refuses are a DataError under ``key``.
    """
    try:
        if saved.spec is not None:
            added = pipeline.predict_rows(saved.model, saved.spec, frame)
        else:  # a folder saved before pipeline.json: the pickled preprocessing makes the features
            if frame.empty:
                raise pipeline.RowsError("no rows to predict")
            x = transform_features(saved.preprocessor, saved.meta["columns"], frame, key=key)
            raw = saved.model.predict(x, batch_size=1024, verbose=0)
            added = pipeline.outputs(raw, saved.meta, index=frame.index)
    except pipeline.RowsError as err:
        raise DataError(key, str(err)) from None
    out = frame.copy()
    for name in added.columns:  # a column of that name in the rows is replaced, as before
        out[name] = added[name]
    return out
