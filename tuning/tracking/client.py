"""Connect to the MLflow tracking store named by the ``tracking`` config, or fail in one line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuning.errors import ConfigError
from tuning.storage import redact


def tracking_uri(tracking: Mapping[str, Any], root: str | Path) -> str | None:
    """The tracking URI, or None when tracking is off (``tracking=none``).

    Default: MLflow's embedded SQLite store ``sqlite:///<root>/mlflow.db`` (no server).
    """
    if not tracking.get("enabled", True):
        return None
    return str(tracking.get("uri") or f"sqlite:///{Path(root) / 'mlflow.db'}")


def connect(uri: str, timeout: int = 10) -> Any:
    """An ``MlflowClient`` for ``uri``, checked to answer; ConfigError (``tracking.uri``) if not."""
    # A server that does not answer must fail fast, not retry for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            "tracking.uri", f"cannot reach MLflow at {redact(uri)}: {redact(reason)[:200]}"
        ) from None
    return client


def experiment_id(client: Any, name: str) -> str:
    """Id of the MLflow experiment ``name`` (one per study), created if missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    return str(client.create_experiment(name))


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith(("http://", "https://")):
        return f"open {redact(uri)} in a browser"
    return f"mlflow ui --backend-store-uri {redact(uri)}"
