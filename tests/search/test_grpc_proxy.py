"""study.storage=grpc://HOST:PORT: workers that reach one PostgreSQL study only through
`tuning storage-proxy` (Optuna's gRPC storage proxy), in rehearsal mode so trials take
fractions of a second. Nothing is mocked: a real PostgreSQL (pgserver), the proxy as its own
process, the workers as `tuning sweep workers=3` starts them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import optuna
import pytest
from conftest import cli, free_port
from test_database import SECRET, postgres  # noqa: F401 - the module's PostgreSQL server fixture

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow


def start_proxy(url: str, port: int) -> subprocess.Popen[str]:
    """`tuning storage-proxy` in front of ``url``; returns once it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", "storage-proxy", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return proc
            except grpc.FutureTimeoutError:
                continue
    proc.kill()
    raise AssertionError("the storage proxy did not start within 60 s")


def test_workers_share_a_study_through_the_grpc_proxy(postgres, in_tmp, capsys):  # noqa: F811
    port = free_port()
    proxy = start_proxy(postgres, port)
    try:
        args = [
            "sweep",
            "workers=3",
            f"study.storage=grpc://localhost:{port}",
            "study.name=proxied",
            "study.n_trials=12",
            "training.simulate_epoch_seconds=0.02",
            "training.max_epochs=3",
            "data.n_samples=400",
            "pruner=none",
            "tracking=none",
        ]
        assert cli(args) == 0
    finally:
        proxy.send_signal(signal.SIGTERM)
        output, _ = proxy.communicate(timeout=30)
    assert proxy.returncode == 143
    assert output.startswith("storage proxy for postgresql://postgres:***@/postgres?host=")
    assert SECRET not in output + "".join(capsys.readouterr())

    study = optuna.load_study(study_name="proxied", storage=postgres)  # the database itself
    trials = study.trials
    assert 12 <= len(trials) <= 14  # n_trials in all; a worker already training finishes its trial
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.number for t in trials}) == len(trials)  # each trial told once
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == len(configs), "a configuration ran twice"
    assert len({flat_attrs(t.user_attrs)["worker"] for t in trials}) == 3  # all three workers ran trials


def test_a_bad_grpc_address_is_one_line(in_tmp, capsys):
    assert cli(["sweep", "study.storage=grpc://proxy", "tracking=none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "error: study.storage: 'grpc://proxy' is not a gRPC proxy address; allowed: grpc://HOST:PORT"
    )
