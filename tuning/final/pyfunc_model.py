"""The final model as an MLflow pyfunc, logged as code: raw rows in, `tuning predict`'s columns out.

MLflow copies this file into the model and runs it to load the model ("models from code"), so
nothing is pickled and ``tuning`` is never imported: the prediction itself is
``pipeline.predict_rows``, shipped beside it with ``code_paths``. The artifacts are the final
folder's ``model.keras`` (built-in Keras layers only) and ``pipeline.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.model import PythonModel


class FinalPipeline(PythonModel):
    """Preprocessing, network and label names of one final model."""

    def load_context(self, context: Any) -> None:
        """Read ``pipeline.json`` and the Keras network from the model's artifacts."""
        import keras
        import pipeline  # the model's code/pipeline.py (tuning/data/pipeline.py)

        self.pipeline = pipeline
        self.spec = json.loads(Path(context.artifacts["pipeline"]).read_text())
        self.network = keras.saving.load_model(context.artifacts["network"], compile=False)

    # No type hints on predict: MLflow would read them as the input's schema; the logged
    # signature (the raw columns and their types) is the schema.
    def predict(self, context, model_input, params=None):
        """Predictions for a pandas frame of raw rows; refused rows are an invalid-parameter
        error (HTTP 400 from ``mlflow models serve``) with the reason `tuning predict` gives."""
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            return self.pipeline.predict_rows(self.network, self.spec, frame)
        except self.pipeline.RowsError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from None


mlflow.models.set_model(FinalPipeline())
