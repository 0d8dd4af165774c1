"""tuning: Hydra-configured Optuna sweeps over Keras models, tracked in MLflow."""

import os

# Quiet TensorFlow's C++ start-up banner unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
