"""What a user sees in the terminal: our own lines; other libraries' notes only in the run's log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

pytestmark = pytest.mark.slow

# SGD at a learning rate of 1e8: the loss turns NaN in the first epoch and Keras' TerminateOnNaN
# says "Batch 0: Invalid loss, terminating training" on its own.
DIVERGING = [*TINY, "study.n_trials=1", "study.max_consecutive_failures=0", "pruner=none",
             "search_space.learning_rate=1e8", "search_space.optimizer=sgd"]  # fmt: skip


def sweep(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_CONFIGURE_LOGGING"}
    done = subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", *args],
        cwd=folder, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_library_notes_go_to_the_log_file_not_the_terminal(tmp_path):
    out = sweep(tmp_path, *DIVERGING, "tracking=mlflow")
    # Our line says what happened, and that a failed trial does not count toward n_trials.
    assert "[0/1, not counted] trial 0 FAIL (loss became NaN at epoch 1)" in out, out
    assert "Invalid loss" not in out, out  # Keras' own words for it
    assert not re.search(r"(INFO|WARNING) mlflow\.|Creating initial MLflow", out), out  # MLflow's own
    log = next((tmp_path / "experiments/plants/runs").glob("*/sweep.log")).read_text()
    assert "Invalid loss, terminating training" in log  # kept, where a curious user looks


def test_one_duration_per_trial_everywhere(tmp_path):
    """The progress line, `tuning report` and the MLflow run show the same seconds for a trial."""
    import optuna
    from mlflow.tracking import MlflowClient

    out = sweep(tmp_path, *TINY, "study.n_trials=2", "tracking=mlflow")
    study = optuna.load_study(
        study_name="plants", storage=f"sqlite:///{tmp_path}/experiments/plants/optuna.db"
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/experiments/mlflow.db")
    runs = client.search_runs(
        [client.get_experiment_by_name("plants").experiment_id], "tags.`tuning.role` = 'trial'"
    )
    seconds = {int(r.data.tags["tuning.trial"]): r.data.metrics["seconds"] for r in runs}
    for t in study.trials:
        duration = t.duration.total_seconds()
        assert seconds[t.number] == pytest.approx(duration, abs=1e-3)
        assert re.search(rf"trial {t.number} \w+ .*, {duration:.1f}s", out), out


def test_verbose_shows_them_in_the_terminal_too(tmp_path):
    out = sweep(tmp_path, *DIVERGING, "verbose=true")
    assert "Invalid loss, terminating training" in out, out
