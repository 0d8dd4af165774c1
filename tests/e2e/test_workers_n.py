"""`tuning sweep workers=N`: N processes on one study, one progress count, a run folder each,
one MLflow parent that the last worker closes, and SIGTERM passed on to every worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "tuning", "sweep", *TINY, "training.max_epochs=1", "pruner=none"]


def load() -> optuna.Study:
    return optuna.load_study(study_name="plants", storage="sqlite:///experiments/plants/optuna.db")


def mlflow_client(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'experiments' / 'mlflow.db'}")


def runs(client, role: str) -> list:
    exp = client.get_experiment_by_name("plants")
    return client.search_runs([exp.experiment_id], f"tags.`tuning.role` = '{role}'", max_results=100)


def test_workers_share_one_study_one_count_and_one_parent_run(in_tmp):
    done = subprocess.run(
        [*COMMAND, "workers=2", "study.n_trials=4", "tracking=mlflow"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    study = load()
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) == len(study.trials) <= 5  # n_trials, + at most workers - 1
    # One count for the study, whichever worker printed the line: 1, 2, 3, ... never repeated.
    counts = [int(n) for n in re.findall(r"^w[01]\| .*\[(\d+)/4\] trial \d+ (?:COMPLETE|PRUNED)", out, re.M)]
    assert counts == list(range(1, len(finished) + 1)), out[-4000:]
    # Each worker: its own run folder and log, CPU threads split (2 cores here: 1 each), its own
    # sampler stream (recorded on its trials), no two trials alike.
    # (by suffix: a worker whose Hydra starts a second later has a later time in its name)
    folders = sorted((in_tmp / "experiments" / "plants" / "runs").iterdir(), key=lambda f: f.name[-3:])
    assert [f.name[-3:] for f in folders] == ["-w0", "-w1"]
    for k, folder in enumerate(folders):
        assert "workers=1" in (folder / ".hydra" / "overrides.yaml").read_text()
        threads = max(1, (os.cpu_count() or 1) // 2)
        assert f"training.threads={threads}" in (folder / ".hydra" / "overrides.yaml").read_text()
        logged = re.findall(r"\] trial (\d+) (?:COMPLETE|PRUNED)", (folder / "sweep.log").read_text())
        printed = re.findall(rf"^w{k}\| .*\] trial (\d+) (?:COMPLETE|PRUNED)", out, re.M)
        assert logged == printed
    streams = {
        flat_attrs(t.user_attrs)["worker"]: flat_attrs(t.user_attrs)["sampler_seed"] for t in study.trials
    }
    assert len(set(streams.values())) == len(streams)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)

    # MLflow: one parent, closed FINISHED by the last worker, describing the whole study.
    client = mlflow_client(in_tmp)
    [parent] = runs(client, "sweep")
    assert parent.info.status == "FINISHED"
    children = {int(r.data.tags["tuning.trial"]): r for r in runs(client, "trial")}
    assert sorted(children) == [t.number for t in study.trials]
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert parent.data.metrics["n_complete"] + parent.data.metrics.get("n_pruned", 0) == len(finished)
    assert parent.data.tags["tuning.best_trial"] == str(study.best_trial.number)
    best = {k.removeprefix("best."): v for k, v in parent.data.tags.items() if k.startswith("best.")}
    assert best == {k: str(v) for k, v in study.best_trial.params.items()}


def test_sigterm_reaches_every_worker_and_nothing_is_left_running(in_tmp):
    proc = subprocess.Popen(
        [*COMMAND, "workers=2", "study.n_trials=20", "training.max_epochs=8",
         "training.early_stopping.patience=null", "tracking=mlflow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(r"\] trial \d+ (COMPLETE|PRUNED)", line):
            break
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=300) == 143, output[-4000:]
    # Within a minute (it took 60 s more when a worker waited out a lock a cut write left).
    assert time.monotonic() - signalled < 60, output[-4000:]
    assert output.count("terminated (SIGTERM)") == 2, output[-4000:]  # each worker ended its trial
    trials = load().trials
    assert [t.number for t in trials if t.state.name == "RUNNING"] == []
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state.name == "FAIL")
    [parent] = runs(mlflow_client(in_tmp), "sweep")
    assert parent.info.status == "KILLED"
