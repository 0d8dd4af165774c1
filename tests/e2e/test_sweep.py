"""End-to-end sweeps on tiny data: trial states, values, resume, best.yaml, NaN trials, Ctrl-C."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY, cli, settings

from tuning.study.summary import flat_attrs

pytestmark = pytest.mark.slow

STORAGE = "sqlite:///experiments/plants/optuna.db"


def load(name: str = "plants", storage: str = STORAGE) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]


def test_sweep_runs_resumes_to_exactly_n_trials_and_exports_best(in_tmp, capsys):
    assert cli(["sweep", *TINY, "study.n_trials=3"]) == 0
    study = load()
    first = {t.number: t.value for t in finished(study)}
    assert len(first) == 3
    for trial in study.trials:
        assert trial.state.name in ("COMPLETE", "PRUNED")
        if trial.state.name == "COMPLETE":
            assert 0.0 < trial.value < 2.0
            assert (
                1
                <= flat_attrs(trial.user_attrs)["best_epoch"]
                <= flat_attrs(trial.user_attrs)["epochs_trained"]
                <= 3
            )
            assert flat_attrs(trial.user_attrs)["gap_loss"] == pytest.approx(
                flat_attrs(trial.user_attrs)["val_loss"] - flat_attrs(trial.user_attrs)["train_loss"]
            )
            assert flat_attrs(trial.user_attrs)["val_log_loss"] == pytest.approx(trial.value)
            assert flat_attrs(trial.user_attrs)["metric"] == "val_log_loss"

    best = yaml.safe_load(Path("experiments/plants/best.yaml").read_text())
    assert best["best"]["trial"] == study.best_trial.number
    assert best["best"]["value"] == pytest.approx(study.best_value)
    space = best["search_space"]
    params = study.best_trial.params
    assert space["units"] == [params[f"units_{i}"] for i in range(params["n_layers"])]
    for name in ("activation", "dropout", "learning_rate", "batch_size", "epochs", "optimizer", "loss"):
        assert space[name] == params[name]
    assert all(not isinstance(v, dict) for v in space.values()), "every dimension fixed"
    assert best["study"]["name"] == "plants" and best["data"]["source"] == "plants"
    assert best["best"]["columns"] == ["height", "branches"] and best["best"]["class_names"] == ["A", "B"]
    assert "hydra" not in best
    out = capsys.readouterr().out + capsys.readouterr().err
    runs = list(Path("experiments/plants/runs").iterdir())
    assert len(runs) == 1 and (runs[0] / ".hydra" / "config.yaml").exists()
    assert sorted(p.name for p in Path().iterdir()) == ["experiments"], out

    # Re-running with a larger total resumes: the first trials are kept, not redone.
    assert cli(["sweep", *TINY, "study.n_trials=5"]) == 0
    study = load()
    assert len(finished(study)) == 5
    assert {t.number: t.value for t in finished(study) if t.number in first} == first

    # Re-running at the total does nothing and still exits 0.
    assert cli(["sweep", *TINY, "study.n_trials=5"]) == 0
    assert len(load().trials) == 5


def test_same_seed_reproduces_trials_and_values(tmp_path, monkeypatch):
    results = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert cli(["sweep", *TINY, "study.n_trials=2", "seed=7", "pruner=none"]) == 0
        results.append([(t.params, t.value) for t in load().trials])
    (params_a, values_a), (params_b, values_b) = zip(*results[0], strict=True), zip(*results[1], strict=True)
    assert params_a == params_b
    assert values_a == pytest.approx(values_b, abs=1e-6)


def test_a_resumed_sweep_draws_new_trials_not_the_first_ones_again(in_tmp):
    """Same command, run twice: the second run's start-up trials are new points. (Optuna seeds a
    sampler once per process: with the same seed a resume replayed trials 0, 1 as 2, 3.)"""
    args = [*TINY, "pruner=none", "training.max_epochs=1"]
    assert cli(["sweep", *args, "study.n_trials=2"]) == 0
    assert cli(["sweep", *args, "study.n_trials=4"]) == 0
    params = [tuple(sorted(t.params.items())) for t in load().trials]
    assert len(params) == 4 and len(set(params)) == 4, params
    # A new study with the same seed still starts where the first one did: reproducible.
    first = params[:2]
    assert cli(["sweep", *args, "study.n_trials=2", "study.name=again"]) == 0
    again = optuna.load_study(study_name="again", storage="sqlite:///experiments/again/optuna.db")
    assert [tuple(sorted(t.params.items())) for t in again.trials] == first


def test_nan_trial_fails_and_the_study_goes_on(in_tmp, monkeypatch):
    # The study is made here, not by the sweep: worker 0 keeps the sampler stream of `seed`, so
    # the values not enqueued (and whether SGD diverges with them) are the same every run.
    monkeypatch.setenv("TUNING_WORKER_INDEX", "0")
    from tuning.commands.sweep import run

    cfg = settings(
        "study.n_trials=2",
        "search_space.learning_rate={type:float,low:1e-3,high:1e8,log:true}",
        "search_space.optimizer=sgd",
    )
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    study.enqueue_trial({"learning_rate": 1e8})
    study.enqueue_trial({"learning_rate": 1e-2})
    run(cfg)
    trials = load().trials
    assert trials[0].state.name in ("FAIL", "PRUNED")
    if trials[0].state.name == "FAIL":
        assert "NaN" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state.name == "COMPLETE" and math.isfinite(trials[1].value)
    # A failed trial uses up one of this run's attempts; a re-run would go on to 2 finished.
    assert len(trials) == 2


def test_failing_trials_stop_after_max_consecutive_failures(in_tmp):
    from tuning.commands.sweep import run
    from tuning.search.engines.base import TooManyFailures

    cfg = settings("study.n_trials=5", "study.max_consecutive_failures=2", "search_space.learning_rate=1e12")
    cfg["search_space"]["optimizer"] = "sgd"
    with pytest.raises(TooManyFailures, match="2 trials in a row failed; last error: loss became NaN"):
        run(cfg)
    assert [t.state.name for t in load().trials] == ["FAIL", "FAIL"]


def test_ctrl_c_marks_the_trial_and_a_rerun_retries_it(in_tmp):
    args = [*TINY, "study.n_trials=2", "training.max_epochs=40", "search_space.epochs=40",
            "training.early_stopping.patience=null", "pruner=none"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning", "sweep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = []
    for line in proc.stdout:  # trial 0's progress line: the study's database exists by now
        lines.append(line)
        if " trial 0 " in line:
            break
    deadline = time.time() + 120
    while time.time() < deadline:  # trial 1 is training once its seed is recorded
        if any(t.number == 1 and "seed" in flat_attrs(t.user_attrs) for t in load().trials):
            break
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    err = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, err
    assert "run the same command to resume" in err
    interrupted = [t for t in load().trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1 and interrupted[0].state.name == "FAIL"

    assert cli(["sweep", *args]) == 0
    trials = load().trials
    retry = [t for t in trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params
    assert len(finished(load())) == 2


THREADS_RUN = (
    "import json, sys\nimport optuna, tensorflow as tf\nfrom tuning.cli import main\n"
    "rc = main(sys.argv[1:])\nt = tf.config.threading\n"
    "study = optuna.load_study(study_name='plants', storage='sqlite:///experiments/plants/optuna.db')\n"
    "print(json.dumps([rc, t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads(),"
    " [tr.value for tr in study.trials]]))\n"
)


def test_threads_setting_reaches_tensorflow_and_leaves_values_unchanged(tmp_path):
    outcomes = {}
    for threads in ("1", "null"):
        folder = tmp_path / threads
        folder.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                THREADS_RUN,
                "sweep",
                *TINY,
                "study.n_trials=2",
                f"training.threads={threads}",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outcomes[threads] = json.loads(done.stdout.strip().splitlines()[-1])
    rc, intra, inter, values = outcomes["1"]
    assert (rc, intra, inter) == (0, 1, 1)
    assert outcomes["null"][1:3] == [0, 0]  # 0: TensorFlow picks (all cores)
    assert values == outcomes["null"][3] and len(values) == 2


def test_two_workers_share_one_sqlite_study_and_its_trial_total(in_tmp):
    """Two processes on the default SQLite file: both finish, no trial is run twice, and the total
    is n_trials (Optuna's MaxTrialsCallback may let the other worker finish one more)."""
    cmd = [sys.executable, "-m", "tuning", "sweep", *TINY, "study.n_trials=4", "training.threads=1"]
    workers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = load().trials
    done = finished(load())
    assert 4 <= len(done) <= 5
    assert [t for t in trials if t.state.name not in ("COMPLETE", "PRUNED")] == []
    # Each worker logs one line per trial it ran: together, every trial exactly once.
    ran = sorted(int(n) for out in outputs for n in re.findall(r"\] trial (\d+) (?:COMPLETE|PRUNED)", out))
    assert ran == sorted(t.number for t in done)
    assert (in_tmp / "experiments" / "plants" / "best.yaml").exists()


def test_best_yaml_comes_from_the_study_not_the_command(in_tmp):
    """A later command's sampler, pruner or n_trials never reach best.yaml; a command that changes
    nothing leaves it byte-identical; one that changes the trials is refused and writes nothing."""
    assert cli(["sweep", *TINY, "study.n_trials=2"]) == 0
    path = Path("experiments/plants/best.yaml")
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    best = yaml.safe_load(before)
    assert best["sampler"]["name"] == "tpe" and best["seed"] == 42
    study = load()
    assert best["best"]["trial"] == study.best_trial.number
    assert best["search_space"]["activation"] == study.best_trial.params["activation"]

    assert cli(["sweep", *TINY, "study.n_trials=2", "sampler=random", "pruner=none"]) == 0
    assert cli(["sweep", *TINY, "study.n_trials=2"]) == 0
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp
    other = "relu" if study.best_trial.params["activation"] != "relu" else "tanh"
    assert cli(["sweep", *TINY, "study.n_trials=2", f"search_space.activation={other}", "seed=3"]) == 2
    assert path.read_bytes() == before
    assert len(load().trials) == 2


def test_train_uses_exactly_what_the_best_trial_used(in_tmp):
    """After a resume with another sampler, `tuning train` gets the trial's values and seed from
    best.yaml, and warns about neither seed nor data."""
    assert cli(["sweep", *TINY, "study.n_trials=2"]) == 0
    assert cli(["sweep", *TINY, "study.n_trials=3", "sampler=random", "pruner=none"]) == 0
    best = load().best_trial
    done = subprocess.run(
        [sys.executable, "-m", "tuning", "train", "study=plants", "tracking=none", "final.refit=false"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is not the sweep's" not in done.stdout + done.stderr
    meta = json.loads(Path("experiments/plants/final/meta.json").read_text())
    assert (
        meta["best_trial"] == best.number
        and meta["seed"] == flat_attrs(best.user_attrs)["seed"] == 42 + best.number
    )
    hp = meta["hyperparameters"]
    assert hp["units"] == [best.params[f"units_{i}"] for i in range(best.params["n_layers"])]
    for name in ("activation", "dropout", "learning_rate", "batch_size", "optimizer", "loss"):
        assert hp[name] == best.params[name]
