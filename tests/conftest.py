"""Shared test helpers: compose the real configs once, shrink them for tiny, fast runs."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tuning.study.summary import StudySummary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The Ctrl-C tests send SIGINT to sweeps. A test run started in the background by a script
# (`pytest &`, no job control) begins with SIGINT ignored, and every child inherits that, so the
# sweeps would never see their Ctrl-C. Python's own handler here makes the children start with
# the default one (a handled signal is reset on exec; an ignored one is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# pgserver (the PostgreSQL tests' server) logs every start and stop at INFO: its warnings go to
# the real stderr, its chatter nowhere.
_pgserver_log = logging.getLogger("pgserver")
_pgserver_log.propagate = False
_pgserver_log.addHandler(logging.StreamHandler(sys.__stderr__))
_pgserver_log.setLevel(logging.WARNING)


# A few hundred rows, three epochs: each trial trains a real Keras model in a few seconds.
TINY = (
    "data.n_samples=400",
    "training.max_epochs=3",
    "study.n_trials=3",
    "tracking=none",
)


def settings(*overrides: str, tiny: bool = True) -> dict[str, Any]:
    """The resolved sweep config for ``overrides`` (composed from the real conf/)."""
    from tuning.config import compose, resolved

    return resolved(compose("config", [*(TINY if tiny else ()), *overrides]))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty working directory: everything a command writes lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(args: Sequence[str]) -> int:
    """Run the `tuning` command in-process; returns its exit code."""
    from tuning.cli import main

    try:
        return main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def signal_during_trial_1(
    folder, signum: int, *args: str, settle: float = 1.0, trials: Any = None, times: int = 1
) -> tuple[int, str]:
    """Run `tuning sweep *args` as a process in ``folder`` and send it ``signum`` once trial 1
    is training (``settle`` seconds after its seed is recorded); returns (exit code, output).

    ``trials``: reads the study's trials (objects with ``number`` and ``user_attrs``); default:
    the plants study in its SQLite file. ``times``: how often to send it, 0.2 s apart."""
    import subprocess
    import sys
    import time

    import optuna

    from tuning.study.summary import flat_attrs

    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", *args],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:  # trial 0's progress line: the stores exist by now
            lines.append(line)
            if " trial 0 " in line:
                break
        if trials is None:
            storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/experiments/plants/optuna.db")
            study = optuna.load_study(study_name="plants", storage=storage)
            trials = lambda: study.get_trials(deepcopy=False)  # noqa: E731
        deadline = time.monotonic() + 120
        # Trial 1 has started training once its seed is recorded (its record exists by then).
        while time.monotonic() < deadline and not any(
            t.number == 1 and "seed" in flat_attrs(t.user_attrs) for t in trials()
        ):
            time.sleep(0.05)
        time.sleep(settle)
        for _ in range(times):  # twice: a user pressing Ctrl-C again while the trial is told
            proc.send_signal(signum)
            time.sleep(0.2)
        output = "".join(lines) + proc.stdout.read()
        return proc.wait(timeout=120), output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_process_group(proc) -> None:
    """End a server started with ``start_new_session=True`` and every process it forked:
    SIGTERM, then SIGKILL if it has not exited within 30 s."""
    import contextlib
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --- workers opening a new database together (storage tests) -----------------------------

# Each process sleeps until its instant, then opens (and so creates) the same database.
OPEN_AT = (
    "import sys, time\nfrom tuning.search.engines.optuna_storage import open_storage\n"
    "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
    "open_storage(sys.argv[1], heartbeat_interval=60)\nprint('opened')\n"
)


def open_storage_together(url: str, count: int, *, stagger: float = 0.0) -> list[tuple[int, str, str]]:
    """``count`` processes open the storage at ``url`` at once (process i ``i * stagger`` seconds
    after the first), after every interpreter has imported it; each one's (exit code, stdout,
    stderr)."""
    import subprocess
    import time

    start = time.time() + 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, url, str(start + i * stagger)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    return results


# --- a real MLflow server (tracking, outage, distributed tests) ---------------------------

MLFLOW = Path(sys.executable).with_name("mlflow")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlflow_server(folder: Path, port: int, backend_store_uri: str):
    """`mlflow server` on 127.0.0.1:``port`` over ``backend_store_uri``, artifacts and
    ``server.log`` (appended: a restart keeps the first start's lines) in ``folder``. Its own
    process group, so ``stop_process_group`` ends it and its workers; see ``wait_for_mlflow``."""
    import subprocess

    with (folder / "server.log").open("ab") as log_file:
        return subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(folder / "artifacts")],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip


def wait_for_mlflow(proc, port: int, folder: Path, timeout: float = 240) -> str:
    """The server's URL once ``/health`` answers; the test fails (with the server's log) when
    it exits or stays silent for ``timeout`` seconds: a server test never skips."""
    import contextlib
    import time
    import urllib.request

    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            if answer.status == 200:
                return url
        time.sleep(0.2)
    stop_process_group(proc)
    pytest.fail("mlflow server did not answer /health:\n" + (folder / "server.log").read_text()[-3000:])


def read_summary(study_dir: Path, name: str, engine: str) -> StudySummary:
    """Study ``name`` in ``study_dir`` as engine-neutral records, read the way `tuning report`
    reads it (``engine``: optuna or keras_tuner)."""
    if engine == "optuna":
        from tuning.search.engines.optuna_study import load_summary

        return load_summary(f"sqlite:///{study_dir.resolve()}/optuna.db", name)
    from tuning.study.keras_tuner_files import read_project

    summary = read_project(study_dir / "keras_tuner", name)
    assert summary is not None
    return summary
