"""A trial's outcome is stored as one user attribute (one study write, not one per value), and
every reader gives it back as the flat record it was before."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from conftest import TINY, cli

from tuning.results.optuna_sqlite import read_study
from tuning.search.engines.optuna_study import load_summary
from tuning.study.summary import OUTCOME_ATTR

REHEARSE = ("training.simulate_epoch_seconds=0.01",)  # the sweep's own code path, no TensorFlow
STARTED = {"worker", "worker_pidns", "sampler_seed", "seed", "metric", "direction"}  # at a trial's start


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
    assert stored_keys(db) == {n: STARTED | {OUTCOME_ATTR} for n in range(3)}

    summary = load_summary(f"sqlite:///{db}", "plants")
    for t in summary.trials:
        assert t.state == "COMPLETE" and OUTCOME_ATTR not in t.user_attrs
        attrs = t.user_attrs
        assert attrs["val_log_loss"] == t.value and attrs["seed"] == 42 + t.number
        assert attrs["gap_log_loss"] == attrs["val_log_loss"] - attrs["train_log_loss"]
        assert 1 <= attrs["best_epoch"] <= attrs["epochs_trained"] <= 3
    # `tuning report`'s reader of the SQLite file reads the same records.
    fast = read_study(in_tmp / "experiments" / "plants" / "optuna.db", "plants")
    assert fast is not None
    assert [t.user_attrs for t in fast.trials] == [t.user_attrs for t in summary.trials]
