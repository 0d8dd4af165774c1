"""Study storages beyond the default file: bad URLs, a real PostgreSQL server shared by two
workers, and a worker killed in the middle of a trial (SQLite and PostgreSQL).

Nothing is mocked: the server is PostgreSQL from pgserver's bundled binaries, started in a
temporary folder and reached through its Unix socket. It trusts local connections, so the
password in the URL is never checked: it is there to prove it never reaches an output.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli, open_storage_together
from sqlalchemy.exc import IntegrityError, OperationalError

SECRET = "pg-s3cret-7"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for this module; its URL, with a password in it."""
    pgserver = pytest.importorskip("pgserver", reason="pip install -e '.[test]' brings pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket folder>
        assert uri.startswith("postgresql://postgres:@/"), uri
        yield uri.replace("postgres:@", f"postgres:{SECRET}@", 1)
    finally:
        server.cleanup()  # stops the server
        atexit.unregister(server._cleanup)  # its own exit hook would log to pytest's closed streams


def storage_override(url: str) -> str:
    return f'study.storage="{url}"'  # quoted: the URL holds '=' (Hydra's override grammar)


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- bad storage URLs: one line, exit 2, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (f"study.storage=foo://bob:{SECRET}@db/optuna", "is not a storage URL; allowed: sqlite:///FILE"),
        (
            f"study.storage=mysql+mysqldb://bob:{SECRET}@db/optuna",
            "mysql needs the driver mysqldb; install it: pip install 'mysqlclient'",
        ),
        (
            f'study.storage="postgresql://bob:{SECRET}@/optuna?host=/nonexistent-socket-dir"',
            "cannot connect to postgresql://bob:***@/optuna?host=/nonexistent-socket-dir: ",
        ),
        (
            f"study.storage=postgresql://bob:{SECRET}@/optuna?host=/tmp",
            "cannot parse the value (mismatched input '=' expecting <EOF>); quote a value",
        ),
    ],
    ids=["unknown-scheme", "missing-driver", "no-server", "unquoted-equals"],
)
def test_bad_storage_is_one_line_exit_2_and_writes_nothing(in_tmp, capsys, override, expected):
    assert cli(["sweep", *TINY, override]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: study.storage: ") and err.count("\n") == 1, err
    assert expected in err
    assert SECRET not in out + err
    assert list(in_tmp.iterdir()) == []


def test_report_names_a_missing_driver_in_one_line(in_tmp, capsys):
    assert cli(["report", "x", "--storage", f"mysql+mysqldb://bob:{SECRET}@db/optuna"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --storage: mysql needs the driver mysqldb; install it: pip install 'mysqlclient'\n"


# --- real sweeps --------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_no_password_is_written(postgres, in_tmp, capsys):
    """Two processes, one PostgreSQL study, MLflow on: both finish, every trial runs once, the
    total is n_trials (+1 at most, see test_sweep), and the password is in no output or file."""
    cmd = [
        *(sys.executable, "-m", "tuning", "sweep", *TINY, "tracking=mlflow"),
        *("study.name=pg-two", "study.n_trials=4", "training.threads=1", storage_override(postgres)),
    ]
    workers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="pg-two", storage=postgres)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(done) == len(study.trials) <= 5
    ran = sorted(int(n) for out in outputs for n in re.findall(r"\] trial (\d+) (?:COMPLETE|PRUNED)", out))
    assert ran == sorted(t.number for t in done)
    assert all("in postgresql://postgres:***@/postgres?host=" in out for out in outputs)

    assert cli(["report", "pg-two", "--storage", postgres]) == 0
    report = capsys.readouterr().out
    assert report.startswith("study 'pg-two' in postgresql://postgres:***@/postgres?host=")
    assert len(re.findall(r"^\s*\d+\s+(?:COMPLETE|PRUNED)", report, flags=re.M)) == len(done)

    written = files_under(in_tmp / "experiments")
    assert in_tmp / "experiments" / "pg-two" / "best.yaml" in written
    assert any(p.name == "mlflow.db" for p in written)  # params, tags and artifacts of every run
    leaks = [p for p, data in written.items() if SECRET.encode() in data]
    assert leaks == [] and all(SECRET not in out for out in [*outputs, report])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_worker_killed_mid_trial_is_retried_and_nothing_finished_is_redone(backend, in_tmp, request):
    """SIGKILL (no chance to clean up) while trial k trains: the next run marks k FAIL (its
    heartbeat stopped), runs its parameters once more, and keeps every finished trial as it was."""
    name = f"crash-{backend}"
    if backend == "postgres":
        url = request.getfixturevalue("postgres")
        where = [storage_override(url)]
    else:
        url, where = f"sqlite:///{in_tmp}/experiments/{name}/optuna.db", []
    cmd = [
        *(sys.executable, "-m", "tuning", "sweep", *TINY, f"study.name={name}", "study.n_trials=2"),
        # pruner=none: the second trial must still be training when the worker is killed
        *("training.max_epochs=30", "training.early_stopping.patience=null", "pruner=none", *where),
        *("study.heartbeat_interval=1", "study.grace_period=2"),
    ]
    worker = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    killed = None
    while killed is None and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if url.startswith("sqlite") and not (in_tmp / "experiments" / name / "optuna.db").exists():
            continue  # opening it here would create it
        try:
            trials = optuna.load_study(study_name=name, storage=url).trials
        except (KeyError, ValueError):  # the study is not made yet
            continue
        except (OperationalError, IntegrityError):  # the worker is creating the tables right now
            continue
        if any(t.state.name == "COMPLETE" for t in trials):
            killed = next((t for t in trials if t.state.name == "RUNNING" and t.intermediate_values), None)
    os.killpg(worker.pid, signal.SIGKILL)
    output = worker.communicate(timeout=60)[0]
    assert killed is not None, f"no trial was caught training (exit {worker.returncode}):\n{output[-3000:]}"
    before = {t.number: t for t in optuna.load_study(study_name=name, storage=url).trials}
    assert before[killed.number].state.name == "RUNNING"  # left behind by the dead worker
    kept = {n: (t.value, t.params, t.datetime_complete) for n, t in before.items() if t.state.is_finished()}
    time.sleep(3)  # longer than study.grace_period: the dead worker's heartbeat is stale

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (
        f"trial(s) [{killed.number}] were left running by a worker that stopped"
        in rerun.stdout + rerun.stderr
    )
    after = optuna.load_study(study_name=name, storage=url).trials
    assert after[killed.number].state.name == "FAIL"

    # Re-queued once: by the dead-worker check (same host: `retry_of`), or by Optuna's heartbeat
    # retry callback (a worker on another machine) — never both.
    def retry_of(t):
        return t.user_attrs.get(
            "retry_of", optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
        )

    retries = [t for t in after if retry_of(t) is not None]
    assert [retry_of(t) for t in retries] == [killed.number]
    assert retries[0].state.name == "COMPLETE" and retries[0].params == killed.params
    assert {n: (after[n].value, after[n].params, after[n].datetime_complete) for n in kept} == kept
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in after) == 2
    assert [t.number for t in after if not t.state.is_finished()] == []


def test_workers_that_create_a_new_databases_tables_together_all_open_it(postgres):
    # Each worker's first storage creates Optuna's tables; on PostgreSQL the losers of that race
    # get a duplicate table or type (SQLSTATE 42P07 / 42710), and must find the tables made.
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE tables_race"))
    admin.dispose()
    url = postgres.replace("/postgres?", "/tables_race?", 1)
    # Each process starts 15 ms after the one before: some look for the tables before another's
    # transaction commits and create them after it has.
    results = open_storage_together(url, 10, stagger=0.015)
    assert [code for code, _, _ in results] == [0] * 10, [err[-1500:] for _, _, err in results]
    assert [out.strip() for _, out, _ in results] == ["opened"] * 10
