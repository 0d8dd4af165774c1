"""Workers on one study draw their own trials: per-worker sampler streams, a lone worker
reproducible from `seed`, and three real worker processes started together."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from conftest import TINY

from tuning.config.schema import Component
from tuning.search.engines.optuna import reseed_on_resume
from tuning.search.workers import sampler_seed, worker_index, worker_key
from tuning.study.summary import flat_attrs

SAMPLER = Component("random", {"_target_": "optuna.samplers.RandomSampler", "seed": 42})


def draws(study: optuna.Study, n: int = 3) -> list[float]:
    return [study.ask().suggest_float("x", 0, 1) for _ in range(n)]


def test_a_lone_worker_keeps_seed_and_a_resume_gets_seed_plus_trials():
    new = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=42))
    assert reseed_on_resume(new, SAMPLER, created=True) == 42
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=42))
    assert draws(new) == draws(again)  # the same seed, the same trials
    for t in new.trials:
        new.tell(t.number, 0.5)
    assert reseed_on_resume(new, SAMPLER) == 45  # resumed alone: seed + trials already in it


def test_workers_started_together_get_distinct_streams():
    keys = [
        worker_key(None, created=True, ran=0, others_running=False, worker="h:1"),  # made the study
        worker_key(None, created=False, ran=0, others_running=False, worker="h:2"),  # joined it
        worker_key(None, created=False, ran=1, others_running=True, worker="h:3"),
        worker_key(2, created=False, ran=0, others_running=False, worker="h:4"),  # launcher's index
    ]
    assert keys == ["0", "h:2", "h:3", "2"]
    seeds = {sampler_seed(42, 0, k) for k in keys}
    assert len(seeds) == 4 and sampler_seed(42, 0, "0") == 42


def test_the_worker_index_comes_from_the_launcher_or_the_cluster(monkeypatch):
    for name in ("TUNING_WORKER_INDEX", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert worker_index() is None
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert worker_index() == 7
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")  # Kubernetes indexed Job
    assert worker_index() == 3
    monkeypatch.setenv("TUNING_WORKER_INDEX", "1")
    assert worker_index() == 1


@pytest.mark.slow
def test_three_workers_started_together_never_repeat_a_trial(in_tmp):
    """The issue's measurement, as a test: 3 processes, one new study, TPE's random start-up
    (every trial here is a start-up trial): no two trials share their parameters, and each
    trial records the sampler seed of the worker that drew it."""
    cmd = [
        *(sys.executable, "-m", "tuning", "sweep", *TINY, "study.n_trials=6"),
        *("training.threads=1", "training.max_epochs=1", "pruner=none"),
    ]
    workers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "abc"
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    study = optuna.load_study(study_name="plants", storage="sqlite:///experiments/plants/optuna.db")
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(trials) <= 8  # n_trials, + at most workers - 1 still training when it was reached
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), params
    streams = {flat_attrs(t.user_attrs)["worker"]: flat_attrs(t.user_attrs)["sampler_seed"] for t in trials}
    assert len(set(streams.values())) == len(streams) == 3, streams
    assert 42 in streams.values()  # the worker that made the study kept `seed`


REQUEUE = """
import sys, time
import optuna
from tuning.search.engines.optuna_stale import requeue_interrupted
from tuning.search.engines.optuna_storage import open_storage, study_lock
url, start = sys.argv[1], float(sys.argv[2])
study = optuna.load_study(study_name="race", storage=open_storage(url))
time.sleep(max(0.0, start - time.time()))  # all three at the same instant
with study_lock(url, "race"):
    print(requeue_interrupted(study))
"""


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_an_interrupted_trial_is_requeued_once_by_workers_starting_together(tmp_path, kind):
    import time

    url = (
        f"sqlite:///{tmp_path / 'optuna.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'x.journal'}"
    )
    from tuning.search.engines.optuna_storage import open_storage

    study = optuna.create_study(study_name="race", storage=open_storage(url))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    start = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REQUEUE, url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    done = [p.communicate(timeout=120) for p in procs]
    outputs = sorted(out.strip() for out, _ in done)
    assert outputs == ["[0]", "[]", "[]"], outputs
    # The study lock is not Optuna's own journal lock: no write waited on it, none was broken
    # (Optuna warns after 10 s and breaks a lock held 30 s, letting a second worker in).
    assert not any("lock file" in err for _, err in done), [err for _, err in done]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [0]


@pytest.mark.slow
def test_a_cluster_worker_gets_its_own_run_folder(in_tmp):
    """Pods of an indexed Job (or SLURM array tasks) started in the same second on one shared
    volume: each writes its own runs/<time>-w<k>/ folder and sweep.log."""
    env = {**os.environ, "JOB_COMPLETION_INDEX": "3", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TUNING_RUN_SUFFIX", None)
    env.pop("TUNING_WORKER_INDEX", None)
    done = subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", *TINY, "study.n_trials=1", "training.max_epochs=1"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = (in_tmp / "experiments" / "plants" / "runs").iterdir()
    assert folder.name.endswith("-w3") and (folder / "sweep.log").is_file()
