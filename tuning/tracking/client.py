"""Connect to the MLflow tracking store named by the ``tracking`` config, or fail in one line."""

from __future__ import annotations

import os
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning.config.schema import TrackingConfig
from tuning.errors import ConfigError
from tuning.files import file_lock
from tuning.redaction import first_line, redact


def tracking_uri(tracking: TrackingConfig, root: str | Path) -> str | None:
    """The tracking URI, or None when tracking is off (``tracking=none``).

    Default: MLflow's embedded SQLite store ``sqlite:///<root>/mlflow.db`` (no server);
    ``root`` is ``paths.root``.
    """
    if not tracking.enabled:
        return None
    return tracking.uri or f"sqlite:///{Path(root) / 'mlflow.db'}"


def check_tracking(tracking: TrackingConfig, root: str | Path, *, reach_server: bool = True) -> str | None:
    """The tracking URI of the parsed ``tracking`` group, or None when tracking is off.

    With ``reach_server``, a tracking server (``http(s)://``), or an embedded SQLite store that
    already exists, is opened now: an unreachable server or a damaged file fails in one line
    before anything is written or trained (a new store is made later, by the run itself).
    """
    uri = tracking_uri(tracking, root)
    lock = store_lock(uri) if uri is not None else None
    if uri is not None and reach_server and (is_server(uri) or (lock and lock.with_suffix("").is_file())):
        connect(uri)
    return uri


@dataclass(frozen=True)
class Tracking:
    """A checked connection to the tracking store."""

    uri: str
    client: Any


def experiment_name(tracking: TrackingConfig, study: str) -> str:
    """The MLflow experiment a study logs to: ``tracking.experiment``, else the study's name.
    Several studies (e.g. one per engine) may share one; their runs are told apart by the tag
    ``tuning.study``."""
    return tracking.experiment or study


def connect_tracking(tracking: TrackingConfig, root: str | Path) -> Tracking | None:
    """Connect to the store ``tracking`` names (``root``: ``paths.root``, where the default
    store lives); None for ``tracking=none`` (mlflow not imported).

    Call it before loading data: an unreachable store is a ConfigError, nothing trained.
    """
    uri = check_tracking(tracking, root, reach_server=False)
    if uri is None:
        return None
    return Tracking(uri, connect(uri))


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def connect(uri: str, timeout: int = 10) -> Any:
    """An ``MlflowClient`` for ``uri``, checked to answer; ConfigError (``tracking.uri``) if not."""
    # A server that does not answer must fail fast, not retry for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
    # MLflow prints each run's URL, credentials included; the sweep prints its own, redacted.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    target, lock = uri, store_lock(uri)
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
        # MLflow caches stores by URI: a relative one would follow the working folder around.
        target = f"sqlite:///{lock.with_suffix('').resolve()}"
    try:
        # Workers started together on a new SQLite store would all create its tables, and
        # MLflow's migrations run concurrently leave it broken ("table _alembic_tmp_tags
        # already exists"): one worker at a time opens it.
        with file_lock(lock) if lock is not None else nullcontext():
            if lock is not None and not lock.with_suffix("").exists():
                _create_store(lock.with_suffix(""))
            return _answering_client(target)
    except Exception as err:
        cause = first_line(err)[:200]
        if lock is not None and any(sign in cause.lower() for sign in DAMAGE):
            raise ConfigError("tracking.uri", _damaged_store(lock.with_suffix(""), cause)) from None
        raise ConfigError("tracking.uri", f"cannot reach MLflow at {redact(uri)}: {cause}") from None


# SQLite's and MLflow's words for a store file that is cut off, not SQLite, or half made (a run
# killed while MLflow created its tables, before stores were made in a temporary file).
DAMAGE = ("malformed", "not a database", "already exists", "no such table", "no such column")


def _damaged_store(db: Path, cause: str) -> str:
    return (
        f"{db}: not a usable MLflow store ({cause}): the file was cut off, or its creation stopped "
        f"half way; move it away (mv {db} {db}.broken, and {db.name}-journal beside it if there) "
        "and run again for a new, empty store, or restore it from a backup"
    )


def _create_store(db: Path) -> None:
    """Make a new embedded store: MLflow creates its tables in a temporary file beside ``db``,
    renamed to ``db`` once complete, so a kill while it works never leaves a half-made ``db``
    (only a temporary file, removed here by the next run; the caller holds the store's lock)."""
    for left in db.parent.glob(f".{db.name}.*.creating*"):
        left.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".creating")
    os.close(fd)
    tmp = Path(name)
    try:
        _answering_client(f"sqlite:///{tmp.resolve()}")
        tmp.replace(db)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def store_lock(uri: str) -> Path | None:
    """The lock file beside an embedded SQLite store (``mlflow.db.lock``); None for a server."""
    if uri.startswith("sqlite:///") and "?" not in uri:
        path = Path(uri.removeprefix("sqlite:///"))
        return path.with_name(path.name + ".lock")
    return None


def _answering_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)
    return client


# MLflow 3's UI opens an experiment of unknown kind on its GenAI overview ("Traces 0"); marked as
# model training, it opens on the runs table.
KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_id(client: Any, name: str, artifact_location: str | None = None) -> str:
    """Id of the MLflow experiment ``name`` (one per study), created if missing.

    ``artifact_location`` applies only to a new experiment (None: the store's default).
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if found.tags.get(KIND_TAG) != MODEL_TRAINING:
            client.set_experiment_tag(found.experiment_id, KIND_TAG, MODEL_TRAINING)
        return str(found.experiment_id)
    try:
        return str(
            client.create_experiment(
                name, artifact_location=artifact_location, tags={KIND_TAG: MODEL_TRAINING}
            )
        )
    except Exception:
        found = client.get_experiment_by_name(name)  # another worker created it just now
        if found is None:
            raise
        return str(found.experiment_id)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an embedded SQLite store's database
    (MLflow's default would be ``./mlruns`` of whatever folder the command runs in); None = the
    store's default (a server decides for itself)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///").split("?")[0]).parent / "mlartifacts").resolve().as_uri()
    return None


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if is_server(uri):
        return f"open {redact(uri)} in a browser"
    return f"mlflow ui --backend-store-uri {redact(uri)}"
