"""The final model in MLflow: a run named ``final`` in the study's experiment, the whole pipeline
(preprocessing, network, label names) logged as a pyfunc LoggedModel over the raw input columns,
registered under the study's name with the alias ``champion``.

The run is tagged ``tuning.study=<name>``, ``tuning.role=final``, and links to the sweep:
``tuning.sweep_run_id`` (the parent run the sweep tagged ``tuning.role=sweep``),
``tuning.best_trial`` and, when the sweep logged it, ``tuning.best_trial_run_id``. The LoggedModel
carries the same links as tags, the best trial's hyperparameters as params and the final
metrics (``test_*`` among them), so ``mlflow.search_logged_models`` ranks final models by them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuning.logs import stderr_to_log
from tuning.redaction import redact
from tuning.tracking.client import artifact_location, connect_tracking, experiment_id, experiment_name
from tuning.tracking.content import EPOCH

if TYPE_CHECKING:
    from tuning.config import Settings
    from tuning.final.refit import FinalModel

log = logging.getLogger("tuning")

STUDY_TAG, ROLE_TAG, TRIAL_TAG = "tuning.study", "tuning.role", "tuning.trial"
PARENT_TAG = "mlflow.parentRunId"
ALIAS = "champion"
MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limit
# Files of the final folder logged beside the MLflow model (the model itself is in the model).
ARTIFACTS = ("preprocessing.joblib", "meta.json", "metrics.csv", "history.csv")


def open_final_tracking(settings: Settings) -> FinalTracker | None:
    """Connect to the tracking store before anything is trained (None for ``tracking=none``)."""
    tracking = connect_tracking(settings.tracking, settings.paths_root)
    if tracking is None:
        return None
    study = settings.study.name
    name = experiment_name(settings.tracking, study)
    experiment = experiment_id(tracking.client, name, artifact_location(tracking.uri))
    return FinalTracker(tracking.uri, tracking.client, study, experiment)


def find_sweep_run(client: Any, experiment: str, study: str) -> Any | None:
    """The study's latest sweep parent run (tags ``tuning.study``, ``tuning.role=sweep``), or None."""
    where = f"tags.`{ROLE_TAG}` = 'sweep' and tags.`{STUDY_TAG}` = '{study}'"
    found = client.search_runs([experiment], where, max_results=1, order_by=["attributes.start_time DESC"])
    return found[0] if found else None


def find_trial_run(client: Any, experiment: str, study: str, sweep_run_id: str, trial: int) -> Any | None:
    """The child run the sweep logged for ``trial``, or None."""
    where = (
        f"tags.`{ROLE_TAG}` = 'trial' and tags.`{STUDY_TAG}` = '{study}' "
        f"and tags.`{TRIAL_TAG}` = '{trial}' and tags.`{PARENT_TAG}` = '{sweep_run_id}'"
    )
    found = client.search_runs([experiment], where, max_results=1, order_by=["attributes.start_time DESC"])
    return found[0] if found else None


@dataclass
class FinalTracker:
    """Logs one final model into the study's experiment."""

    uri: str
    client: Any
    study: str
    experiment_id: str

    def log(self, final: FinalModel, folder: Path) -> dict[str, Any]:
        """Log run, model and artifacts, register the model, move ``champion`` to it.

        Returns ``run_id``, ``model_uri`` (``models:/<study>/<version>``) and ``alias``; they are
        also added to meta.json.
        """
        import json

        import mlflow

        from tuning.final.saved import META_FILE, write_json

        tags = self.tags(final)
        run = self.client.create_run(self.experiment_id, run_name="final", tags=tags)
        run_id = run.info.run_id
        try:
            values = self._log_values(run_id, final)
            for name in ARTIFACTS:
                if (folder / name).is_file():
                    self.client.log_artifact(run_id, str(folder / name), artifact_path="final")
            mlflow.set_tracking_uri(self.client.tracking_uri)  # the URI connect() resolved
            # MLflow prints "Successfully registered model ..." itself: into the log file; our
            # own line below says the same with the version and alias.
            with mlflow.start_run(run_id=run_id), stderr_to_log(logging.getLogger("mlflow")):
                info = log_pipeline(final, folder, self.study, tags)
                # The LoggedModel's own metrics: what search_logged_models filters and orders by.
                mlflow.log_metrics(values, model_id=info.model_id, run_id=run_id)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        version = str(info.registered_model_version)
        self.client.set_registered_model_alias(self.study, ALIAS, version)
        # The Models page shows these first: what the model is, without opening its run.
        about = model_description(final, version)
        self.client.update_registered_model(self.study, description=about)
        self.client.update_model_version(self.study, version, description=about)
        ids = {
            "run_id": run_id,
            "model_uri": f"models:/{self.study}/{version}",
            "alias": ALIAS,
            "model_id": info.model_id,
        }
        meta_path = folder / META_FILE
        write_json(meta_path, {**json.loads(meta_path.read_text()), "mlflow": ids})
        log.info(
            f"MLflow: run 'final' {run_id} of study '{self.study}' in experiment {self.experiment_id} ({redact(self.uri)}); model registered as "
            f"'{self.study}' version {version} ({ids['model_uri']}), alias {ALIAS}: models:/{self.study}@{ALIAS}"
        )
        return ids

    def tags(self, final: FinalModel) -> dict[str, str]:
        trial = int(final.search["trial"])
        tags = {
            STUDY_TAG: self.study,
            ROLE_TAG: "final",
            "tuning.best_trial": str(trial),
            "tuning.refit": str(final.refit).lower(),
            **({"tuning.final_check": final.check.line()} if final.check is not None else {}),
            "mlflow.note.content": (
                f"Final model of study '{self.study}': best trial {trial}'s settings, "
                + ("refit on train+validation" if final.refit else "trained on the train split")
                + f" for {final.epochs} epochs, evaluated once on the test split. Files: final/."
            ),
        }
        sweep = find_sweep_run(self.client, self.experiment_id, self.study)
        if sweep is None:
            log.info(
                f"MLflow: no sweep run of study '{self.study}' in the store (sweep ran with tracking=none?)"
            )
            return tags
        tags["tuning.sweep_run_id"] = sweep.info.run_id
        child = find_trial_run(self.client, self.experiment_id, self.study, sweep.info.run_id, trial)
        if child is not None:
            tags["tuning.best_trial_run_id"] = child.info.run_id
        return tags

    def _log_values(self, run_id: str, final: FinalModel) -> dict[str, float]:
        """Params, final metrics and learning curves on the run; returns the final metrics."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params = {
            **final.hp.as_params(),
            "refit": final.refit,
            "final_epochs": final.epochs,  # "epochs" is the searched setting (an upper bound)
            "seed": final.seed,
            "best_trial": final.search["trial"],
            "data": final.dataset.name,
            "task": final.dataset.task,
        }
        values = {f"train_{k}": v for k, v in final.result.train.items()}
        values.update({f"val_{k}": v for k, v in final.result.val.items()})
        values.update({f"test_{k}": v for k, v in final.test.items()})
        values.update({f"search_{k}": v for k, v in final.search.items() if k.startswith(("val_", "gap_"))})
        table = final.table
        values.update({f"gap_test_{name}": float(v) for name, v in table["test gap"].items()})
        values.update(final.check.metrics() if final.check is not None else {})  # final vs its trial
        # Learning curves: the Keras history per epoch (step = epoch, from 1), under the prefix the
        # sweep's trials use: under its plain name, "val_loss" at its last epoch would hide the
        # headline (the UI shows a metric's latest step).
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if isinstance(v, (int, float))]
        metrics += [
            Metric(f"{EPOCH}{key}", float(v), now, step)
            for key, series in final.result.history.items()
            for step, v in enumerate(series, start=1)
        ]
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        for i in range(0, len(metrics), MAX_METRICS_PER_CALL):
            self.client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS_PER_CALL])
        return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}


def model_description(final: FinalModel, version: str) -> str:
    """The registered model's description (Markdown): study, best trial and its validation
    score, how the final model was trained, its test metrics, and its input columns."""
    search, metric = final.search, str(final.search.get("metric", "objective"))
    name = metric.removeprefix("val_")
    seen = f"{metric} {search['value']:.4f}" if isinstance(search.get("value"), (int, float)) else metric
    gap = search.get(f"gap_{name}")
    if isinstance(gap, (int, float)):
        seen += f", gap_{name} {gap:+.4f}"
    how = "refit on train+validation" if final.refit else "trained on the train split (early stopping)"
    test = ", ".join(f"{k} {v:.4f}" for k, v in final.test.items())
    columns = ", ".join(map(str, final.dataset.columns))
    return (
        f"**Study '{final.study}', version {version}**: best trial {search['trial']} ({seen} on "
        f"validation), {how} for {final.epochs} epochs. **Test** (seen once): {test}. "
        f"Input columns: {columns}; `tuning predict` and `mlflow.pyfunc` take them by name."
    )


def log_pipeline(final: FinalModel, folder: Path, study: str, tags: Mapping[str, str]) -> Any:
    """Log the final folder as one pyfunc model (code: ``pyfunc_model.py`` and ``pipeline.py``;
    artifacts: ``model.keras`` and ``pipeline.json``) in the active run, registered as ``study``.

    Returns MLflow's ``ModelInfo`` (``model_id``, ``registered_model_version``).
    """
    import mlflow

    from tuning.data import pipeline
    from tuning.final import pyfunc_model
    from tuning.final.saved import MODEL_FILE, PIPELINE_FILE

    example = input_example(final)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=pyfunc_model.__file__,
        code_paths=[pipeline.__file__],
        artifacts={"network": str(folder / MODEL_FILE), "pipeline": str(folder / PIPELINE_FILE)},
        signature=signature(final, example),
        input_example=example,
        registered_model_name=study,
        pip_requirements=pip_requirements(),
        params={k: str(v) for k, v in final.hp.as_params().items()},
        tags={k: v for k, v in tags.items() if k != "mlflow.note.content"},
        model_type="tuning-final",
    )


def input_example(final: FinalModel) -> Any:
    """A few raw training rows (complete ones when there are any), numbers as float64."""
    data = final.dataset
    rows = data.dev_frame[list(data.columns)]
    complete = rows.dropna()
    rows = (complete if len(complete) else rows).head(3).reset_index(drop=True)
    return rows.astype(dict.fromkeys(data.preprocessor.numeric, "float64"))


def signature(final: FinalModel, example: Any) -> Any:
    """The raw input columns by name and type (numbers as double, so a missing value is allowed;
    text as string; yes/no as boolean), and the prediction columns `tuning predict` writes."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from tuning.data.pipeline import outputs
    from tuning.final.saved import pipeline_spec

    numeric = set(final.dataset.preprocessor.numeric)
    columns: list[ColSpec | TensorSpec] = []
    for name in final.dataset.columns:
        kind = "double" if name in numeric else "string"
        if name not in numeric and pd.api.types.is_bool_dtype(example[name]):
            kind = "boolean"
        columns.append(ColSpec(kind, name))
    x = final.dataset.x_train[: len(example)]
    predicted = outputs(final.model.predict(x, verbose=0), pipeline_spec(final.dataset))
    return ModelSignature(inputs=Schema(columns), outputs=infer_signature(example, predicted).outputs)


def pip_requirements() -> list[str]:
    """Pinned here: MLflow would otherwise infer them by loading the model in a subprocess."""
    import keras
    import pandas as pd
    import tensorflow as tf

    return [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}", f"pandas=={pd.__version__}"]
