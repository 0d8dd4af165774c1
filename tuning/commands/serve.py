"""`tuning serve`: MLflow's scoring server for a study's champion model (raw rows in, predictions out)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tuning.commands.support import fail
from tuning.errors import ConfigError
from tuning.redaction import redact

USAGE = """\
usage: tuning serve study=NAME [--host HOST] [--port PORT] [tracking.uri=URL] [paths.root=DIR]

Starts `mlflow models serve` (in this Python environment, --env-manager local) for the model
`tuning train` registered as NAME with the alias 'champion'. POST raw rows to /invocations
(JSON dataframe_split or dataframe_records, or CSV); the answer holds predicted_<target> and,
for classification, probability_<class>, exactly as `tuning predict` writes them.

  study=NAME       the registered model (models:/NAME@champion)
  --host HOST      the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0
                   opens the server to the network, with no authentication)
  --port PORT      default 5001
  tracking.uri=URL the MLflow store (default: sqlite:///<paths.root>/mlflow.db)
  paths.root=DIR   default: experiments

example:
  tuning serve study=plants
  curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: text/csv' --data-binary @new_plants.csv"""

KEYS = ("study", "tracking.uri", "paths.root")
FLAGS = ("--host", "--port")


def parse(args: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments and ``--host``/``--port``; anything else is a ConfigError."""
    values: dict[str, str] = {"--host": "127.0.0.1", "--port": "5001"}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        flag, eq, given = arg.partition("=")
        if flag in FLAGS:
            if not eq:
                if not rest or rest[0].startswith("-"):
                    raise ConfigError(flag, "needs a value, e.g. --port 5001")
                given = rest.pop(0)
            values[flag] = given
            continue
        if not eq or flag not in KEYS:
            allowed = ", ".join([*(f"{k}=..." for k in KEYS), *FLAGS])
            raise ConfigError(flag if eq else arg, f"unknown argument; allowed: {allowed}")
        values[flag] = given
    if not values.get("study"):
        raise ConfigError("study", "is required: tuning serve study=NAME")
    port = values["--port"]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("--port", f"{port!r}; must be a port number, 1 to 65535")
    if not values["--host"].strip():
        raise ConfigError("--host", "is empty; give an address, e.g. 127.0.0.1")
    return values


def store_uri(values: dict[str, str]) -> str:
    """The tracking URI; the default SQLite store must exist (an absolute path, as MLflow caches by URI)."""
    uri = values.get("tracking.uri")
    if uri:
        return uri
    db = Path(values.get("paths.root") or "experiments") / "mlflow.db"
    if not db.is_file():
        raise ConfigError("study", f"no MLflow store {db}; train the model first: tuning train study=...")
    return f"sqlite:///{db.resolve()}"


def champion(uri: str, study: str) -> str:
    """The registered version behind ``models:/<study>@champion``, or a ConfigError saying how to get one."""
    from mlflow.exceptions import MlflowException

    from tuning.tracking.client import connect
    from tuning.tracking.final import ALIAS

    client = connect(uri)
    try:
        return str(client.get_model_version_by_alias(study, ALIAS).version)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise  # the store failed otherwise (permissions, a server error): not bad input
        raise ConfigError(
            "study",
            f"no model '{study}' with alias '{ALIAS}' in {redact(uri)}; train one: tuning train study={study}",
        ) from None


def _become(command: list[str], env: dict[str, str]) -> NoReturn:
    """Replace this process with ``command``: on success exec never returns."""
    os.execvpe(sys.executable, command, env)


def main(args: Sequence[str]) -> int:
    """``tuning serve study=NAME``: check, then become ``mlflow models serve`` (same process id)."""
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    try:
        values = parse(args)
        uri = store_uri(values)
        study, host, port = values["study"], values["--host"], values["--port"]
        version = champion(uri, study)
    except ConfigError as err:
        fail(err)
    print(
        f"serving models:/{study}@champion (version {version}) at http://{host}:{port}/invocations"
        + ("" if host in ("127.0.0.1", "localhost", "::1") else "; open to the network, no authentication"),
        flush=True,
    )
    # The URI goes by environment, not argv: credentials in it stay out of `ps`.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{study}@champion"]
    command += ["--env-manager", "local", "--host", host, "--port", port]
    _become(command, env)
