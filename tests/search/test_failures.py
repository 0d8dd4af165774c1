"""Failures are classified: a trial's own failure ends that trial FAIL and the study goes on; a bug of
ours stops the sweep with one line and its traceback in the run's log; a study that stops itself is
one line with best.yaml kept; a sweep below n_trials says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY, cli, settings

from tuning.errors import TrialFailed

STORAGE = "sqlite:///experiments/plants/optuna.db"
# What TensorFlow's C++ layer prints on stderr when it starts (not ours).
TF_NOISE = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000")


def load() -> optuna.Study:
    return optuna.load_study(study_name="plants", storage=STORAGE)


def test_errors_raised_by_keras_or_memory_are_the_trials_own():
    import keras
    import tensorflow as tf

    from tuning.search.failures import is_trial_failure

    def raised(fn):
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - the error itself is what is tested
            return err
        raise AssertionError("did not raise")

    assert is_trial_failure(raised(lambda: keras.layers.Dropout(1.5)))  # a value Keras cannot build
    assert is_trial_failure(TrialFailed("loss became NaN at epoch 2"))
    assert is_trial_failure(MemoryError())
    assert is_trial_failure(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"))
    # Raised by our own code, or anything else: a bug, not the trial's failure.
    assert not is_trial_failure(raised(lambda: int("not a number")))
    assert not is_trial_failure(raised(lambda: {}["units"]))
    assert not is_trial_failure(RuntimeError("lost connection"))


class Broken:
    """An observer with a bug of ours."""

    def on_trial_end(self, study, record):
        raise KeyError("units_7")


@pytest.mark.slow
def test_a_bug_in_an_observer_stops_the_trials(in_tmp):
    from tuning.commands.sweep import check
    from tuning.config import with_task
    from tuning.data import load_dataset
    from tuning.search.engines import make_engine
    from tuning.search.engines.base import StudyRecord
    from tuning.search.loop import Budget, run_search
    from tuning.search.runner import TrialRunner

    parsed, _ = check(settings("study.n_trials=3"))
    data = load_dataset(parsed.data, parsed.split, 42)
    parsed = with_task(parsed, data.task)  # study.metric: auto -> val_log_loss, minimize
    engine = make_engine(parsed, STORAGE)
    engine.open(parsed.space, StudyRecord({"metric": "val_log_loss"}, {}, {}))
    runner = TrialRunner(data, parsed.training, metric="val_log_loss", direction="minimize", seed=42)
    with pytest.raises(KeyError, match="units_7"):
        run_search(engine, runner, Budget(n_trials=3, max_consecutive_failures=5), [Broken()])
    assert [t.state.name for t in load().trials] == ["COMPLETE"]  # stopped after the first: not 3 trials


def sweep(*args: str, prelude: str = "") -> tuple[int, list[str]]:
    """`tuning sweep` in its own process (after ``prelude``); exit code and stderr lines."""
    code = f"import sys\n{prelude}\nfrom tuning.cli import main\nsys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "sweep", *args], capture_output=True, text=True, timeout=600
    )
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


# A bug of ours, injected: the progress observer raises.
BUG = (
    "from tuning.search.progress import Progress\n"
    "def broken(self, study, record):\n    raise KeyError('units_7')\n"
    "Progress.on_trial_end = broken"
)


@pytest.mark.slow
def test_a_bug_of_ours_is_one_line_exit_1_and_the_traceback_in_the_log(in_tmp):
    code, err = sweep(*TINY, prelude=BUG)
    assert code == 1, err
    err = [line for line in err if not line.startswith(TF_NOISE)]
    assert len(err) == 1, err
    assert err[0].startswith(
        "error: tuning sweep stopped by an unexpected KeyError: 'units_7'; the traceback is in "
    )
    log = Path(err[0].rsplit("the traceback is in ", 1)[1]).read_text()
    assert "Traceback (most recent call last)" in log and "KeyError: 'units_7'" in log
    assert len(load().trials) == 1


@pytest.mark.slow
def test_a_study_that_stops_itself_is_one_line_exit_2_and_keeps_best_yaml(in_tmp, monkeypatch):
    """Trial 0 trains; then every trial diverges: the sweep stops after 2 in a row, best.yaml is trial 0's."""
    # The study is made here, not by the sweep: worker 0 keeps the sampler stream of `seed`, so
    # the values not enqueued (and whether SGD diverges with them) are the same every run.
    monkeypatch.setenv("TUNING_WORKER_INDEX", "0")
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    study.enqueue_trial({"learning_rate": 1e-2, "optimizer": "adam"})
    for _ in range(2):
        study.enqueue_trial({"learning_rate": 1e9, "optimizer": "sgd"})
    args = [*TINY, "study.n_trials=4", "study.max_consecutive_failures=2", "pruner=none",
            "search_space.learning_rate={type:float,low:1e-4,high:1e10,log:true}"]  # fmt: skip
    code, err = sweep(*args)
    assert code == 2, err
    err = [line for line in err if not line.startswith(TF_NOISE)]
    assert len(err) == 1 and err[0].startswith(
        "error: study.max_consecutive_failures: the sweep stopped: 2 trials in a row failed; "
        "last error: loss became NaN at epoch "
    ), err
    trials = load().trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert all("NaN" in t.user_attrs["fail_reason"] for t in trials[1:])
    best = yaml.safe_load(Path("experiments/plants/best.yaml").read_text())
    assert best["best"]["trial"] == 0 and best["search_space"]["learning_rate"] == 1e-2


@pytest.mark.slow
def test_no_stop_with_zero_and_a_sweep_below_n_trials_exits_3(in_tmp):
    args = [*TINY, "study.n_trials=1", "study.max_consecutive_failures=0",
            "search_space.learning_rate=1e12", "search_space.optimizer=sgd"]  # fmt: skip
    code, err = sweep(*args)
    assert code == 3, err
    assert err[-1].startswith("error: study.n_trials: 0 of 1 trials finished")
    [trial] = load().trials
    assert trial.state.name == "FAIL" and "NaN" in trial.user_attrs["fail_reason"]
    assert not Path("experiments/plants/best.yaml").exists()
    # With a time budget, fewer trials is what was asked for.
    assert sweep(*args, "study.timeout=600")[0] == 0


def test_report_says_why_each_trial_failed(in_tmp, capsys):
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    trial = study.ask()
    trial.set_user_attr("fail_reason", "loss became NaN at epoch 3")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert cli(["report", "plants"]) == 0
    out = capsys.readouterr().out
    assert "failed trials:\ntrial 0: loss became NaN at epoch 3" in out


def test_a_tracking_store_error_is_a_warning_and_a_bug_in_tracking_is_not(in_tmp, caplog):
    """MLflow refusing a write (here: the parent run was deleted under the sweep) is logged and the
    sweep goes on (the next run back-fills); an error of our own in the tracker propagates."""
    import time

    from tuning.config import parse, validate, validate_for_task
    from tuning.search.engines.optuna_study import summarize
    from tuning.study.record import TrialRecord
    from tuning.tracking.client import connect_tracking
    from tuning.tracking.sweep import start_sweep_tracking

    cfg = settings("data.n_samples=400", "study.n_trials=3", tiny=False)
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    space = validate_for_task(cfg, validate(cfg), "binary")
    trial = study.ask()
    hp = space.suggest(trial)
    study.tell(trial, 0.5)
    parsed = parse(cfg)
    tracking = connect_tracking(parsed.tracking, parsed.paths_root)
    tracker = start_sweep_tracking(tracking, parsed, summarize(study), STORAGE)
    tracking.client.delete_run(tracker.run_id)
    record = TrialRecord(0, "COMPLETE", hp, 42, value=0.5, start_time=time.time())
    with caplog.at_level("WARNING", logger="tuning"):
        tracker.on_trial_end(summarize(study), record)
    assert "MLflow: trial 0 not fully logged" in caplog.text

    broken = TrialRecord(1, "COMPLETE", None, 42, value=0.5, start_time=time.time())  # a bug of ours
    with pytest.raises(AttributeError):
        tracker.on_trial_end(summarize(study), broken)
