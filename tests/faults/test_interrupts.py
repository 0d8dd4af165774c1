"""Ctrl-C before any trial runs says that nothing was lost, and nothing was."""

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
