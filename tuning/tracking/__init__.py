"""MLflow tracking: the only package that imports mlflow (imported lazily, never by `--help`)."""
