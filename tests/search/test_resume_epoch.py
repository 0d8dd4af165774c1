"""A trial killed mid-fit continues from its last epoch on resume, to the value it would have had.

Real sweeps as processes, real signals (kill -9, SIGTERM), one 30-epoch trial on plants: the
resumed trial's value equals an uninterrupted run's (deterministic mode), its MLflow run holds
each epoch once, the log says where it resumed, and its checkpoint folder is gone afterwards;
`tuning train` killed mid-fit the same. One chain of kills (kill -9, then SIGTERM of the
re-run) keeps the test to three sweeps beside the reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.search.checkpoints import claim, latest, trial_folder

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
    folder: Path,
    signum: int,
    epoch: int,
    *,
    trial: int = 0,
    command: tuple[str, ...] = (),
    watch: Path | None = None,
    args: tuple[str, ...] = (),
) -> tuple[int, str, float]:
    """Start the sweep (or ``tuning train`` with ``command``) and send it ``signum`` once
    ``trial`` (or the fit whose checkpoints go to ``watch``) has checkpointed ``epoch`` epochs;
    returns its exit code, output and the seconds it took to exit after the signal."""
    proc = train(folder, *command) if command else sweep(folder, *args)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if epochs_done(watch or trial_folder(checkpoints(folder), trial)) >= epoch:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the command ended before the signal"
        sent = time.monotonic()
        proc.send_signal(signum)
        code, output = finish(proc)
        return code, output, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def epochs_done(folder: Path) -> int:
    """Epochs in the newest checkpoint in ``folder`` (0: none)."""
    found = latest(folder)
    return int(found.name.split("-")[1]) if found is not None else 0


@pytest.fixture(scope="module")
def uninterrupted_sweep(tmp_path_factory) -> tuple[Path, float]:
    """A sweep nothing interrupts: its folder and trial 0's value."""
    from tuning.search.engines.optuna_study import load_summary

    folder = tmp_path_factory.mktemp("uninterrupted")
    code, output = finish(sweep(folder))
    assert code == 0, output[-3000:]
    assert not checkpoints(folder).exists(), "a finished trial leaves no checkpoint"
    [trial] = load_summary(f"sqlite:///{folder}/experiments/plants/optuna.db", "plants").trials
    assert trial.value is not None
    return folder, trial.value


@pytest.fixture
def uninterrupted(uninterrupted_sweep) -> float:
    return uninterrupted_sweep[1]


def test_kill_9_then_sigterm_mid_trial_each_resume_from_the_last_epoch(tmp_path, uninterrupted):
    """kill -9 during trial 0; the resumed sweep's trial 1 continues it and gets SIGTERM (exit
    143); the next resume's trial 2 continues trial 1 to the uninterrupted value."""
    from mlflow import MlflowClient

    from tuning.search.engines.optuna_study import load_summary
    from tuning.tracking.content import EPOCH  # the per-epoch series' prefix

    code, output, _ = kill_at_epoch(tmp_path, signal.SIGKILL, 8)
    assert code == -signal.SIGKILL, output[-3000:]
    first = epochs_done(trial_folder(checkpoints(tmp_path), 0))
    assert first >= 8, "the killed trial kept its checkpoint"

    code, output, seconds = kill_at_epoch(tmp_path, signal.SIGTERM, first + 5, trial=1)
    assert code == 143, output[-3000:]
    assert seconds < 30, f"{seconds:.1f} s from SIGTERM to exit: past a 30 s grace period"
    assert "terminated (SIGTERM)" in output, output[-3000:]
    assert f"trial 1: resumed at epoch {first + 1} from trial 0's checkpoint" in output, output
    second = epochs_done(trial_folder(checkpoints(tmp_path), 1))
    assert second >= first + 5

    code, output = finish(sweep(tmp_path))
    assert code == 0, output[-3000:]
    assert f"trial 2: resumed at epoch {second + 1} from trial 1's checkpoint" in output, output
    study = load_summary(f"sqlite:///{tmp_path}/experiments/plants/optuna.db", "plants")
    killed, terminated, done = study.trials
    assert killed.state == terminated.state == "FAIL"
    assert killed.user_attrs.get("interrupted") and terminated.user_attrs.get("interrupted")
    assert (terminated.user_attrs["retry_of"], done.user_attrs["retry_of"]) == (0, 1)
    assert done.state == "COMPLETE" and done.params == killed.params
    seeds = {t.user_attrs["seed"] for t in study.trials}
    assert len(seeds) == 1, f"each re-run draws what trial 0 drew: {seeds}"
    assert done.value == pytest.approx(uninterrupted, abs=1e-6)
    assert done.user_attrs["epochs_trained"] == 30
    # The pruner heard every epoch of the re-run once: the checkpoint's again, then its own.
    assert sorted(done.intermediate_values) == list(range(30))
    assert all(done.intermediate_values[e] == v for e, v in killed.intermediate_values.items() if e < first)
    assert not checkpoints(tmp_path).exists(), "the checkpoint is removed when the trial ends"

    client = MlflowClient(f"sqlite:///{tmp_path}/experiments/mlflow.db")
    experiment = client.get_experiment_by_name("plants").experiment_id
    for number, least in ((2, 30), (1, second)):  # the interrupted trial 1 keeps what it trained
        runs = client.search_runs([experiment], f"tags.`tuning.trial` = '{number}'")
        [run] = [r for r in runs if r.data.tags.get("tuning.role") == "trial"]
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, f"{EPOCH}loss"))
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= least, f"trial {number}: {steps}"
    assert len(steps) <= 30


def test_a_trial_on_a_kept_model_resumes_from_its_checkpoint_to_the_same_value(tmp_path, uninterrupted):
    """training.kept_models: the checkpoint holds the kept model's variables (its wide kernels,
    the trial's widths, its optimizer); killed with -9 and resumed, the trial ends with the value
    of the uninterrupted sweep, which trained a fresh model."""
    from tuning.search.engines.optuna_study import load_summary

    kept = ("training.kept_models=2",)
    code, output, _ = kill_at_epoch(tmp_path, signal.SIGKILL, 8, args=kept)
    assert code == -signal.SIGKILL, output[-3000:]
    first = epochs_done(trial_folder(checkpoints(tmp_path), 0))
    code, output = finish(sweep(tmp_path, *kept))
    assert code == 0, output[-3000:]
    assert f"trial 1: resumed at epoch {first + 1} from trial 0's checkpoint" in output, output
    killed, done = load_summary(f"sqlite:///{tmp_path}/experiments/plants/optuna.db", "plants").trials
    assert killed.state == "FAIL" and done.state == "COMPLETE" and done.params == killed.params
    assert done.value == pytest.approx(uninterrupted, abs=1e-6)


def test_tuning_train_killed_then_terminated_mid_fit_resumes_from_the_last_epoch(uninterrupted_sweep):
    import json

    folder, _ = uninterrupted_sweep
    meta = folder / "experiments" / "plants" / "final" / "meta.json"
    code, output = finish(train(folder, "tracking=none"))
    assert code == 0, output[-3000:]
    reference = json.loads(meta.read_text())["metrics"]
    watch = folder / "experiments" / "plants" / "checkpoints" / "final"
    assert not watch.exists(), "the final fit's checkpoint is removed once the model is saved"

    code, output, _ = kill_at_epoch(folder, signal.SIGKILL, 6, command=("tracking=none",), watch=watch)
    assert code == -signal.SIGKILL, output[-3000:]
    first = epochs_done(watch)
    assert first >= 6
    code, output, _ = kill_at_epoch(
        folder, signal.SIGTERM, first + 4, command=("tracking=none",), watch=watch
    )
    assert code == 143, output[-3000:]
    assert f"final model: resumed at epoch {first + 1} from its checkpoint" in output, output
    second = epochs_done(watch)
    assert second >= first + 4, "SIGTERM kept the checkpoint"
    code, output = finish(train(folder, "tracking=none"))
    assert code == 0, output[-3000:]
    assert f"final model: resumed at epoch {second + 1} from its checkpoint" in output, output
    resumed = json.loads(meta.read_text())["metrics"]
    for split in ("train", "test"):
        assert resumed[split] == pytest.approx(reference[split], abs=1e-6)
    assert not watch.exists()


def test_a_damaged_checkpoint_is_warned_about_and_not_continued(tmp_path, caplog):
    """A state file a disk fault cut short: the re-run starts at epoch 0, the sweep goes on."""
    epoch = trial_folder(tmp_path, 0) / "epoch-4"
    epoch.mkdir(parents=True)
    (epoch / "state.json").write_text('{"epochs": 4, "hist')
    with caplog.at_level("WARNING", logger="tuning"):
        assert claim(tmp_path, 1, retry_of=0) is None
    assert "unreadable checkpoint (JSONDecodeError" in caplog.text
