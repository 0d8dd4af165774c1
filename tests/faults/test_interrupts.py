"""Ctrl-C before any trial runs says that nothing was lost, and nothing was; it exits 130, never by SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY


def logged(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.glob("experiments/plants/runs/*/sweep.log"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "when",
    [
        "hydra",  # Hydra has made the run folder and its log: its own start-up, before our job
        "study",  # the study is open and logged; TensorFlow is loading, no trial has started
    ],
)
def test_ctrl_c_during_start_up_says_nothing_was_lost(tmp_path, when):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", *TINY],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    ready = {
        "hydra": lambda: bool(list(tmp_path.glob("experiments/plants/runs/*/sweep.log"))),
        "study": lambda: "trials finished" in logged(tmp_path),
    }[when]
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: no trial was running, so nothing was lost; run the same command to start or resume"
    )
    assert "marked FAIL" not in err and "Traceback" not in err
    db = tmp_path / "experiments" / "plants" / "optuna.db"
    if when == "study":
        assert db.exists()
    if db.exists():  # the study may have been created: it holds no trial
        summaries = optuna.study.get_all_study_summaries(f"sqlite:///{db}")
        assert all(s.n_trials == 0 for s in summaries)
    assert not (tmp_path / "experiments" / "plants" / "best.yaml").exists()


# Ctrl-C lands while an import makes a dataclass: the KeyboardInterrupt leaves code run by exec().
PROBE = """
import sys
from contextlib import nullcontext
from tuning import interrupts

guard = {"python": nullcontext, "command": interrupts.for_this_command, "sweep": interrupts.handled}[sys.argv[1]]
try:
    with guard():
        exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10_000): pass")
except KeyboardInterrupt:
    print("caught")
    sys.exit(130)
"""


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        ("python", -signal.SIGINT),  # Python's own handler: caught, yet `python -m` dies by SIGINT
        ("command", 130),  # `tuning`'s, for the whole command
        ("sweep", 130),  # the sweep's and `tuning train`'s, which also hold it during writes
    ],
)
def test_a_caught_ctrl_c_exits_130_even_when_it_left_code_run_by_exec(tmp_path, handler, code):
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[2])])}
    done = subprocess.run(
        [sys.executable, "-m", "probe", handler],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "caught", done.stderr
    assert done.returncode == code, done.stderr
