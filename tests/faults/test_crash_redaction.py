"""A sweep killed by an error nobody catches on purpose shows no credential anywhere.

The cause is real: the PostgreSQL server holding both the Optuna study and the MLflow store
(passwords in both URLs) stops in the middle of the sweep. Left to Hydra, the error printed
``Error executing job with overrides: [... 'study.storage=postgresql://postgres:<password>@…']``.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

SECRET = "crash-s3cret-9"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    """A PostgreSQL server of its own (this test stops it): the server and its passwordless URL."""
    pgserver = pytest.importorskip("pgserver", reason="pip install -e '.[test]' brings pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pgcrash"), cleanup_mode="stop")
    try:
        yield server, server.get_uri()
    finally:
        server.cleanup()
        atexit.unregister(server._cleanup)  # its exit hook would log to pytest's closed streams


def with_password(uri: str, database: str) -> str:
    """postgresql://postgres:@/postgres?host=… -> postgresql://postgres:SECRET@/DATABASE?host=…"""
    head, _, query = uri.partition("?")
    return head.replace("postgres:@", f"postgres:{SECRET}@", 1).rsplit("/", 1)[0] + f"/{database}?{query}"


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_database_lost_mid_sweep_is_one_redacted_line_and_a_redacted_traceback_in_the_log(server, tmp_path):
    import psycopg

    pg, uri = server
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute("CREATE DATABASE mlflow")
    storage, tracking = with_password(uri, "postgres"), with_password(uri, "mlflow")
    work = tmp_path / "work"
    work.mkdir()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = [
        *(sys.executable, "-m", "tuning", "sweep", "data.n_samples=400", "study.n_trials=100"),
        *("training.max_epochs=40", "training.early_stopping.patience=null", "pruner=none"),
        *("tracking=mlflow", f'tracking.uri="{tracking}"', f'study.storage="{storage}"'),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with out.open("w") as stdout, err.open("w") as stderr:
        worker = subprocess.Popen(cmd, cwd=work, stdout=stdout, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 300
            started = False
            while not started and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    trials = optuna.load_study(study_name="plants", storage=uri).trials
                except (KeyError, ValueError):  # no study yet
                    continue
                started = any(t.state.name == "COMPLETE" for t in trials)
            assert started, f"the sweep never finished a trial:\n{err.read_text()[-3000:]}"
            pg.cleanup()  # the database goes away under the running sweep
            worker.wait(timeout=300)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    stdout_text, stderr_text = out.read_text(), err.read_text()

    assert worker.returncode == 1, stderr_text[-3000:]
    last = stderr_text.strip().splitlines()[-1]
    assert last.startswith("error: tuning sweep stopped by an unexpected "), stderr_text[-3000:]
    assert "; the traceback is in " in last and "Error executing job with overrides" not in stderr_text
    # What really happened, not only Optuna's wrapper; which driver error depends on where in a
    # commit the server went away (OperationalError, InterfaceError, PendingRollbackError...).
    assert re.search(r"\(cause: [A-Z]\w+: ", last), (
        last
    )  # the driver's class: OperationalError, AdminShutdown, ...
    # (MLflow's own logger reports its failed writes on stderr too; they hold no URL.)
    assert [line for line in stderr_text.splitlines() if line.startswith("error:")] == [last]
    log = next(work.glob("experiments/plants/runs/*/sweep.log")).read_text()
    assert "Traceback (most recent call last)" in log  # the whole story is kept, redacted
    assert SECRET not in stdout_text + stderr_text
    leaks = [p for p, data in files_under(work).items() if SECRET.encode() in data]
    assert leaks == []


@pytest.mark.slow
def test_train_failing_while_saving_keeps_the_passwords_on_its_command_line_out_of_every_output(tmp_path):
    """A real failure while `tuning train` saves (final/model.keras is a folder, so the model
    cannot be moved into place), with passwords in two URLs on the command line."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    tuning = [sys.executable, "-m", "tuning"]
    sweep = [
        *tuning,
        "sweep",
        "data.n_samples=200",
        "training.max_epochs=2",
        "study.n_trials=1",
        "tracking=none",
    ]
    subprocess.run(sweep, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    (tmp_path / "experiments" / "plants" / "final" / "model.keras").mkdir(parents=True)
    before = {p: d for p, d in files_under(tmp_path).items() if "runs" not in p.parts}

    train = [
        *(*tuning, "train", "study=plants", "tracking=none"),
        f"tracking.uri=http://user:{SECRET}@mlflow.example.org",
        f"study.storage=postgresql://tuner:{SECRET}@db.example.org/optuna",
    ]
    done = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and "Error executing job" not in done.stderr
    assert done.stderr.startswith("error: tuning train stopped by an unexpected IsADirectoryError: ")
    assert "model.keras" in done.stderr and "; the traceback is in " in done.stderr
    log = next((tmp_path / "experiments" / "plants" / "final" / "runs").glob("*/train.log")).read_text()
    assert "Traceback (most recent call last)" in log and "IsADirectoryError" in log
    assert SECRET not in done.stdout + done.stderr
    after = files_under(tmp_path)
    assert [p for p, data in after.items() if SECRET.encode() in data] == []
    # Nothing half-written: the study's files as they were, no model, no staging folder left.
    assert {p: d for p, d in after.items() if "runs" not in p.parts} == before
    assert sorted(p.name for p in (tmp_path / "experiments" / "plants" / "final").iterdir()) == [
        "model.keras",
        "runs",
    ]


def test_a_multirun_writes_and_prints_no_password(tmp_path):
    """`-m`: Hydra's sweeper saves the whole config to multirun.yaml and prints each job's
    overrides, the URL in its escaped form (`postgresql\\://postgres\\:<password>@…`).
    A process of its own: Hydra's multirun sets up logging of its own."""
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:9/db"  # nothing listens: the job stops there
    done = subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", "-m", f"study.storage={url}", "seed=1,2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "#0 : study.storage=postgresql\\://postgres\\:***@127.0.0.1" in printed
    assert "error: study.storage: cannot open postgresql://postgres:***@127.0.0.1:9/db" in done.stderr
    assert SECRET not in printed
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"multirun.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in files}
    assert [p for p in files if SECRET.encode() in p.read_bytes()] == []
