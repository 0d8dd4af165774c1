"""Stores and files after a kill or damage (issue 27, items 2-7, 12, 13, 16): real processes
killed with SIGKILL, real truncated and garbage files; each ends in a state the next command
recognises, or in one line naming the file and what to do (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import TINY, cli, settings

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def python(code: str, *, kill_when: Callable[[], bool] | None = None) -> int:
    """Run ``code`` in a new Python process; with ``kill_when`` (a function of no argument),
    SIGKILL it as soon as that returns true. Returns its exit code (-9: killed)."""
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        while kill_when is not None and proc.poll() is None:
            if kill_when():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=300)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read() if proc.stderr else ""
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unwritable_paths_root_is_one_line_before_hydra_writes(in_tmp, capsys):
    """Item 6: /proc says yes to root's os.access, but nothing can be made in it."""
    assert cli(["sweep", *TINY, "paths.root=/proc/tuning-nowhere/experiments"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        "error: paths.root: cannot write in /proc (read-only, or no permission); "
        "give a folder you can write to\n"
    )
    assert list(in_tmp.iterdir()) == [] and not Path("/proc/tuning-nowhere").exists()


# --- the MLflow store (items 3 and 13) -------------------------------------------------------


def test_a_kill_while_the_mlflow_store_is_created_then_a_truncated_store(in_tmp, capsys):
    """Item 3: SIGKILL while MLflow creates its tables (what `tuning sweep` does on its first
    run): no mlflow.db is left, only a temporary file, and the next run makes a whole store.
    Item 13: that store cut in half: one line naming it and what to do, exit 2; no run folder,
    the file byte for byte."""
    db = in_tmp / "experiments" / "mlflow.db"
    db.parent.mkdir()

    def creating() -> bool:  # MLflow has begun writing its tables
        return any(p.stat().st_size > 0 for p in db.parent.glob(".mlflow.db.*.creating"))

    code = f"from tuning.tracking.client import connect; connect('sqlite:///{db}')"
    assert python(code, kill_when=creating) == -signal.SIGKILL
    assert not db.exists()
    assert python(code) == 0  # its own process: MLflow caches stores by URI
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]

    os.truncate(db, db.stat().st_size // 2)
    before = files_under(in_tmp)
    assert cli(["sweep", *TINY[:-1], "study.n_trials=1"]) == 2  # tracking on: the default store
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    shown = Path("experiments/mlflow.db")  # as the user's paths.root names it
    assert err.startswith(f"error: tracking.uri: {shown}: not a usable MLflow store (")
    assert f"move it away (mv {shown} {shown}.broken" in err
    assert files_under(in_tmp) == before and not (in_tmp / "experiments" / "plants").exists()


# --- Optuna trials (items 2 and 7) --------------------------------------------------------------

WORKER = """
import os, signal
from tuning.commands.sweep import check
from tuning.config import compose, resolved
from tuning.search.engines import make_engine
from tuning.search.engines.base import StudyRecord
parsed, _ = check(resolved(compose("config", {overrides!r})))
engine = make_engine(parsed, {url!r})
engine.open(parsed.space, StudyRecord({{"metric": "val_log_loss"}}, {{}}, {{}}))
{then}
os.kill(os.getpid(), signal.SIGKILL)
"""
OVERRIDES = [*TINY, "study.metric=val_log_loss", "sampler=random", "study.grace_period=1"]


def open_engine(url: str) -> tuple[Any, list[str]]:
    """An Optuna engine on ``url``, opened as a sweep opens it; and its notes."""
    from tuning.commands.sweep import check
    from tuning.search.engines import make_engine
    from tuning.search.engines.base import StudyRecord

    parsed, _ = check(settings(*OVERRIDES))
    engine = make_engine(parsed, url)
    notes = engine.open(parsed.space, StudyRecord({"metric": "val_log_loss"}, {}, {}))
    return engine, notes


def test_a_trial_killed_before_any_worker_owned_it_is_failed_by_the_next_run(tmp_path):
    """Item 2: SIGKILL right after Optuna wrote the trial's row (``study.ask()``), before the
    worker's attributes: the next run, once ``study.grace_period`` has passed, marks it FAIL
    with its reason; the sampler's stream depends on the seed and the study only."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    code = WORKER.format(overrides=OVERRIDES, url=url, then="engine.study.ask()")
    assert python(code) == -signal.SIGKILL
    study = optuna.load_study(study_name="plants", storage=url)
    assert [(t.state.name, t.user_attrs) for t in study.trials] == [("RUNNING", {})]
    time.sleep(1.5)  # study.grace_period=1
    engine, notes = open_engine(url)
    [trial] = study.get_trials()
    assert trial.state.name == "FAIL"
    assert trial.user_attrs["fail_reason"].startswith("no worker took the trial within 1 s of its start")
    assert "trial(s) [0] were left running by a worker that stopped" in notes[0]
    assert engine.stream == 43  # seed + the one trial in the study, whatever this process is


def test_a_resume_after_a_kill_before_the_first_trial_draws_what_an_uninterrupted_run_draws(tmp_path):
    """Item 7: a sweep killed after making its study, before its first trial: the resume is
    the study's only worker and keeps ``seed`` (not a stream of this host and process)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert python(WORKER.format(overrides=OVERRIDES, url=url, then="")) == -signal.SIGKILL
    engine, notes = open_engine(url)
    assert notes == [] and engine.stream == 42
    fresh, _ = open_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    # The same first trial as an uninterrupted run:
    assert engine.ask().hyperparameters == fresh.ask().hyperparameters
    for heartbeat in [*engine.heartbeats.values(), *fresh.heartbeats.values()]:
        heartbeat.stop()


# --- KerasTuner files (items 4, 5, 16) ------------------------------------------------------------


@pytest.mark.slow
def test_a_damaged_tuning_json_is_one_line_and_the_finished_mlflow_run_stays_finished(in_tmp, capsys):
    """Items 4 and 16: a finished KerasTuner sweep (tracked in MLflow), then its tuning.json
    cut short: the resume and `tuning report` each say one line naming the file, exit 2; the
    sweep's MLflow run stays FINISHED and nothing is written."""
    args = [*TINY[:-1], "engine=keras_tuner", "engine.algorithm=random", "training.max_epochs=1"]
    assert cli(["sweep", *args, "study.n_trials=1"]) == 0
    project = in_tmp / "experiments" / "plants-keras_tuner" / "keras_tuner"
    path = project / "trial_0000" / "tuning.json"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    capsys.readouterr()
    before = files_under(in_tmp / "experiments" / "plants-keras_tuner")
    assert cli(["sweep", *args, "study.n_trials=2"]) == 2
    assert cli(["report", "plants-keras_tuner"]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 2 and "Traceback" not in err, err
    for line in lines:
        assert line.startswith(f"error: study.name: {Path('experiments/plants-keras_tuner/keras_tuner')}")
        assert "trial_0000/tuning.json: not a readable KerasTuner file (" in line
        assert line.endswith("restore it from a backup, or move the study's folder away to start it anew")
    assert files_under(in_tmp / "experiments" / "plants-keras_tuner") == before
    with sqlite3.connect(in_tmp / "experiments" / "mlflow.db") as db:
        runs = dict(db.execute("SELECT name, status FROM runs WHERE name NOT LIKE 'trial%'"))
    assert runs == {"sweep": "FINISHED"}


def test_a_keras_tuner_file_that_is_not_an_object_is_one_line(tmp_path, capsys):
    """Item 5: garbage in study.json (valid JSON, not an object; or not JSON): one line."""
    project = tmp_path / "plants-keras_tuner" / "keras_tuner"
    project.mkdir(parents=True)
    for text, what in (("[1, 2]", "a JSON list, not an object"), ("\x00garbage{", "Expecting value")):
        (project / "study.json").write_text(text)
        assert cli(["report", "--root", str(tmp_path), "plants-keras_tuner"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith(f"error: study.name: {project / 'study.json'}: not a readable KerasTuner file")
        assert what in err


# --- workers (item 12) -------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.mark.slow
def test_a_worker_killed_by_sigkill_is_named_in_one_line(in_tmp):
    """Item 12: `tuning sweep workers=3`, one worker killed with SIGKILL while it trains: the
    others finish, and the command exits 1 with a line naming that worker, its signal, and
    what to do."""
    cmd = [sys.executable, "-m", "tuning", "sweep", *TINY, "workers=3", "study.n_trials=4"]
    launcher = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = in_tmp / "experiments" / "plants" / "optuna.db"
        deadline, victim = time.monotonic() + 300, None
        while victim is None and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.2)
            workers = children(launcher.pid)
            if len(workers) != 3 or not db.exists():
                continue
            try:
                with sqlite3.connect(db, timeout=30) as conn:
                    owners = {json.loads(v)["worker"] for (v,) in conn.execute(
                        "SELECT a.value_json FROM trial_user_attributes a JOIN trials t USING (trial_id) "
                        "WHERE a.key = 'owner' AND t.state = 'RUNNING'"
                    )}  # fmt: skip
            except sqlite3.OperationalError:  # its tables are not made yet
                continue
            running = [w for w in workers if any(o.endswith(f":{w}") for o in owners)]
            victim = running[0] if running else None
        assert victim is not None, "no worker started a trial"
        environ = Path(f"/proc/{victim}/environ").read_bytes().split(b"\0")
        index = int(next(v for v in environ if v.startswith(b"TUNING_WORKER_INDEX=")).split(b"=")[1])
        os.kill(victim, signal.SIGKILL)
        out, err = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 1, out + err
    assert err.splitlines()[-1] == (
        f"error: workers: worker w{index} (pid {victim}) was killed by SIGKILL (kill -9, or the "
        "out-of-memory killer) and left its trial RUNNING; the other workers went on: run the same "
        "command: it marks that trial FAIL and, if the study still needs trials, runs its parameters again"
    ), err
    study = optuna.load_study(study_name="plants", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert states.count("RUNNING") == 1 and states.count("COMPLETE") + states.count("PRUNED") >= 4, states
