"""A trial killed mid-fit continues from its last epoch on resume, to the value it would have had.

Real sweeps as processes, real signals (kill -9, SIGTERM), one 30-epoch trial on plants: the
resumed trial's value equals an uninterrupted run's (deterministic mode), its MLflow run holds
each epoch once, the log says where it resumed, and its checkpoint folder is gone afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.search.checkpoints import latest, trial_folder

pytestmark = pytest.mark.slow

# One trial of 30 epochs; patience high enough that early stopping never ends it, but its state
# (best value, best weights, wait) decides the value: a resume that lost it would differ.
LONG = (
    "data=plants",
    "data.n_samples=400",
    "training.max_epochs=30",
    "search_space.epochs=30",
    "training.early_stopping.patience=25",
    "study.n_trials=1",
)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def sweep(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", *LONG, *args],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )  # fmt: skip


def train(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuning", "train", "study=plants", *args],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    output = proc.communicate(timeout=300)[0]
    return proc.returncode, output


def checkpoints(folder: Path) -> Path:
    return folder / "experiments" / "plants" / "checkpoints"


def kill_at_epoch(
    folder: Path, signum: int, epoch: int = 10, *, command: tuple[str, ...] = (), watch: Path | None = None
) -> tuple[int, str, float]:
    """Start the sweep (or ``command``) and send it ``signum`` once trial 0 (or the fit whose
    checkpoints go to ``watch``) has checkpointed ``epoch`` epochs; returns its exit code,
    output and the seconds it took to exit after the signal."""
    proc = train(folder, *command) if command else sweep(folder)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            found = latest(watch or trial_folder(checkpoints(folder), 0))
            if found is not None and int(found.name.split("-")[1]) >= epoch:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep ended before the signal"
        sent = time.monotonic()
        proc.send_signal(signum)
        code, output = finish(proc)
        return code, output, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def uninterrupted_sweep(tmp_path_factory) -> tuple[Path, float]:
    """A sweep nothing interrupts: its folder and trial 0's value."""
    from tuning.search.engines.optuna_study import load_summary

    folder = tmp_path_factory.mktemp("uninterrupted")
    code, output = finish(sweep(folder))
    assert code == 0, output[-3000:]
    assert not any(checkpoints(folder).iterdir()), "a finished trial leaves no checkpoint"
    [trial] = load_summary(f"sqlite:///{folder}/experiments/plants/optuna.db", "plants").trials
    assert trial.value is not None
    return folder, trial.value


@pytest.fixture
def uninterrupted(uninterrupted_sweep) -> float:
    return uninterrupted_sweep[1]


def resume_and_check(folder: Path, reference: float) -> None:
    """Resume the sweep: the re-run of trial 0 continues its checkpoint to the same value."""
    from mlflow import MlflowClient

    from tuning.search.engines.optuna_study import load_summary

    stopped = latest(trial_folder(checkpoints(folder), 0))
    assert stopped is not None, "the interrupted trial kept its checkpoint"
    done_epochs = int(stopped.name.split("-")[1])
    code, output = finish(sweep(folder))
    assert code == 0, output[-3000:]
    assert f"trial 1: resumed at epoch {done_epochs + 1} from trial 0's checkpoint" in output, output
    study = load_summary(f"sqlite:///{folder}/experiments/plants/optuna.db", "plants")
    first, rerun = study.trials
    assert first.state == "FAIL" and first.user_attrs.get("interrupted")
    assert rerun.state == "COMPLETE" and rerun.user_attrs["retry_of"] == 0
    assert rerun.user_attrs["seed"] == first.user_attrs["seed"], "the re-run draws what trial 0 drew"
    assert rerun.value == pytest.approx(reference, abs=1e-6)
    assert rerun.user_attrs["epochs_trained"] == 30
    assert not any(checkpoints(folder).iterdir()), "the checkpoint is removed when the trial ends"

    client = MlflowClient(f"sqlite:///{folder}/experiments/mlflow.db")
    experiment = client.get_experiment_by_name("plants").experiment_id
    runs = client.search_runs([experiment], "tags.`tuning.trial` = '1'")
    [run] = [r for r in runs if r.data.tags.get("tuning.role") == "trial"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/loss")]
    assert sorted(steps) == list(range(1, 31)), "each epoch once"


def test_kill_9_mid_trial_resumes_from_the_last_epoch(tmp_path, uninterrupted):
    code, output, _ = kill_at_epoch(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, output[-3000:]
    resume_and_check(tmp_path, uninterrupted)


def test_sigterm_saves_exits_143_and_resumes_from_the_last_epoch(tmp_path, uninterrupted):
    code, output, seconds = kill_at_epoch(tmp_path, signal.SIGTERM)
    assert code == 143, output[-3000:]
    assert seconds < 30, f"{seconds:.1f} s from SIGTERM to exit: past a 30 s grace period"
    assert re.search(r"interrupted", output), output[-3000:]
    resume_and_check(tmp_path, uninterrupted)


def test_tuning_train_killed_mid_fit_resumes_from_the_last_epoch(uninterrupted_sweep):
    import json

    folder, _ = uninterrupted_sweep
    meta = folder / "experiments" / "plants" / "final" / "meta.json"
    code, output = finish(train(folder, "tracking=none"))
    assert code == 0, output[-3000:]
    reference = json.loads(meta.read_text())["metrics"]
    watch = folder / "experiments" / "plants" / "checkpoints" / "final"
    assert not watch.exists(), "the final fit's checkpoint is removed once the model is saved"

    code, output, _ = kill_at_epoch(folder, signal.SIGKILL, 8, command=("tracking=none",), watch=watch)
    assert code == -signal.SIGKILL, output[-3000:]
    stopped = latest(watch)
    assert stopped is not None
    done_epochs = int(stopped.name.split("-")[1])
    code, output = finish(train(folder, "tracking=none"))
    assert code == 0, output[-3000:]
    assert f"final model: resumed at epoch {done_epochs + 1} from its checkpoint" in output, output
    resumed = json.loads(meta.read_text())["metrics"]
    for split in ("train", "test"):
        assert resumed[split] == pytest.approx(reference[split], abs=1e-6)
    assert not watch.exists()
