"""The parent run with two workers on it: each rewrites the parent's counts after a trial only
when its best changed or ``PROGRESS_SECONDS`` passed, and the end of the sweep writes them all;
a worker that marked the best does not search the experiment's runs again after each trial,
yet a mark another worker moved behind its back is set right at its next parent update."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import optuna
from conftest import settings

STORAGE = "sqlite:///experiments/plants/optuna.db"


def marked(client, experiment_id: str) -> list[str]:
    """Run names of the trials carrying the best mark, by tag or by name."""
    runs = client.search_runs([experiment_id], "tags.`tuning.role` = 'trial'")
    return sorted(
        r.info.run_name
        for r in runs
        if r.data.tags.get("tuning.best") == "true" or r.info.run_name.endswith("best")
    )


def two_workers() -> SimpleNamespace:
    """A study and two trackers on its one parent run; ``trial(tracker, value)`` ends a trial."""
    from tuning.config import parse, validate, validate_for_task
    from tuning.search.engines.optuna_study import summarize
    from tuning.study.record import TrialRecord
    from tuning.tracking.client import connect_tracking
    from tuning.tracking.sweep import start_sweep_tracking

    cfg = settings("data.n_samples=400", tiny=False)
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    space = validate_for_task(cfg, validate(cfg), "binary")
    parsed = parse(cfg)
    tracking = connect_tracking(parsed.tracking, parsed.paths_root)
    first = start_sweep_tracking(tracking, parsed, summarize(study), STORAGE)
    second = start_sweep_tracking(tracking, parsed, summarize(study), STORAGE)
    assert first is not None and second is not None and first.run_id == second.run_id  # one parent

    def trial(tracker, value: float) -> None:
        t = study.ask()
        hp = space.suggest(t)
        study.tell(t, value)
        record = TrialRecord(t.number, "COMPLETE", hp, 42 + t.number, value=value, start_time=time.time())
        record.seconds = 0.1
        tracker.on_trial_end(summarize(study), record)

    return SimpleNamespace(
        study=study,
        first=first,
        second=second,
        trial=trial,
        client=tracking.client,
        summary=lambda: summarize(study),
    )


def test_the_parent_is_rewritten_on_a_new_best_and_at_the_end_not_after_every_trial(in_tmp):
    w = two_workers()
    ended = lambda: w.client.get_run(w.first.run_id).data.metrics.get("n_ended")  # noqa: E731
    w.trial(w.first, 0.5)  # the first update of this command: written
    assert ended() == 1
    w.trial(w.first, 0.7)  # its best holds, 10 s have not passed: the parent keeps its counts
    w.trial(w.first, 0.8)
    assert ended() == 1
    w.trial(w.first, 0.2)  # a new best: written at once, with every count
    assert ended() == 4 and w.client.get_run(w.first.run_id).data.metrics["objective"] == 0.2
    w.trial(w.second, 0.9)  # the other worker's first update
    assert ended() == 5
    w.trial(w.first, 0.6)
    assert ended() == 5
    w.first.finish(w.summary())  # the end of a command writes its reading
    parent = w.client.get_run(w.first.run_id)
    assert parent.data.metrics["n_ended"] == parent.data.metrics["n_complete"] == 6


def test_a_mark_moved_by_another_worker_is_set_right_at_the_next_update(in_tmp, monkeypatch):
    monkeypatch.setattr("tuning.tracking.sweep.PROGRESS_SECONDS", 0.0)  # every trial updates the parent
    w = two_workers()
    first, second, trial = w.first, w.second, w.trial
    client, exp = w.client, first.experiment_id
    trial(first, 0.5)  # trial 0: the first worker's best
    trial(first, 0.7)
    assert marked(client, exp) == ["trial-0000 ★ best"] and first.marked == 0
    trial(second, 0.3)  # trial 2: the second worker's, better: it moves the mark
    assert marked(client, exp) == ["trial-0002 ★ best"] and second.marked == 2

    # The first worker, with an older reading, marks its trial 0 again and names it on the parent,
    # as a worker whose reading raced the second's write would.
    zero, two = first.children[0], second.children[2]
    client.log_batch(two, tags=[run_tag("mlflow.runName", "trial-0002"), run_tag("tuning.best", "false")])
    client.log_batch(
        zero, tags=[run_tag("mlflow.runName", "trial-0000 ★ best"), run_tag("tuning.best", "true")]
    )
    client.set_tag(first.run_id, "tuning.best_trial_run_id", zero)
    assert marked(client, exp) == ["trial-0000 ★ best"]

    trial(second, 0.9)  # the second worker's next trial end: its best is still trial 2
    assert marked(client, exp) == ["trial-0002 ★ best"]
    assert client.get_run(first.run_id).data.tags["tuning.best_trial_run_id"] == two


def run_tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value)
