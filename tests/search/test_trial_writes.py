"""A trial's attributes are stored packed, one user attribute per moment they are known (one
study write each, not one per value), and every reader gives them back as one flat record."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from conftest import TINY, cli

from tuning.results.optuna_sqlite import read_study
from tuning.search.engines.optuna_study import load_summary
from tuning.study.summary import OUTCOME_ATTR, OWNER_ATTR, START_ATTR

REHEARSE = ("training.simulate_epoch_seconds=0.01",)  # the sweep's own code path, no TensorFlow
OWNED = {"worker", "worker_pidns", "sampler_seed"}  # as the trial is asked for
STARTED = {"seed", "metric", "direction"}  # before it trains


def stored_keys(db: str) -> dict[int, set[str]]:
    """Each trial's user-attribute keys as Optuna's SQLite schema holds them (one row a write)."""
    keys: dict[int, set[str]] = defaultdict(set)
    with sqlite3.connect(db) as conn:
        query = "SELECT t.number, a.key FROM trial_user_attributes a JOIN trials t ON a.trial_id = t.trial_id"
        for number, key in conn.execute(query):
            keys[number].add(key)
    return dict(keys)


def test_a_completed_trials_measurements_are_one_attribute_read_back_flat(in_tmp):
    assert cli(["sweep", *TINY, *REHEARSE, "study.n_trials=3", "pruner=none"]) == 0
    db = str(in_tmp / "experiments" / "plants" / "optuna.db")
    assert stored_keys(db) == {n: {OWNER_ATTR, START_ATTR, OUTCOME_ATTR} for n in range(3)}

    summary = load_summary(f"sqlite:///{db}", "plants")
    for t in summary.trials:
        assert t.state == "COMPLETE" and not {OWNER_ATTR, START_ATTR, OUTCOME_ATTR} & t.user_attrs.keys()
        attrs = t.user_attrs
        assert attrs.keys() >= OWNED | STARTED and attrs["metric"] == "val_log_loss"
        assert attrs["val_log_loss"] == t.value and attrs["seed"] == 42 + t.number
        assert attrs["gap_log_loss"] == attrs["val_log_loss"] - attrs["train_log_loss"]
        assert 1 <= attrs["best_epoch"] <= attrs["epochs_trained"] <= 3
    # `tuning report`'s reader of the SQLite file reads the same records.
    fast = read_study(in_tmp / "experiments" / "plants" / "optuna.db", "plants")
    assert fast is not None
    assert [t.user_attrs for t in fast.trials] == [t.user_attrs for t in summary.trials]


def test_a_sweeps_summary_makes_each_ended_trials_record_once_and_reads_as_a_fresh_one(tmp_path):
    """The engine reads its study after every trial; an ended trial's record is made once and
    reused (Optuna refuses writes to an ended trial), a running one's is read anew each time."""
    import optuna

    from tuning.search.engines.optuna_study import summarize

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    study.set_user_attr("metric", "val_loss")
    for value in (0.5, 0.3):
        t = study.ask()
        t.suggest_float("lr", 1e-3, 1e-1, log=True)
        t.set_user_attr(OUTCOME_ATTR, {"val_loss": value})
        study.tell(t, value)
    running = study.ask()
    running.suggest_int("units", 8, 64)
    kept: dict = {}
    first = summarize(study, kept)
    assert sorted(kept) == [0, 1] and first == summarize(study)
    running.set_user_attr(START_ATTR, {"seed": 44})
    study.tell(running, 0.1)
    second = summarize(study, kept)
    assert second == summarize(study) and second.best_number == 2
    assert [t.state for t in second.trials] == ["COMPLETE"] * 3 and second.trials[2].user_attrs == {
        "seed": 44
    }
    assert all(a is b for a, b in zip(first.trials[:2], second.trials[:2], strict=True))  # made once
    assert sorted(kept) == [0, 1, 2]
