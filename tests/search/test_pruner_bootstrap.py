"""`pruner.bootstrap_count` reaches Optuna's ASHA: with 1, the first trial stops at the first
rung (epoch 2) instead of training on because nothing was there to compare it with; and a sweep
of ``n_trials`` still ends with a complete trial: its last one is not pruned while none is."""

from __future__ import annotations

import pytest
from conftest import settings

# A rehearsal (no TensorFlow): each epoch reports a value made from the trial's parameters.
REHEARSAL = ("training.simulate_epoch_seconds=0",)


@pytest.mark.parametrize(("bootstrap", "state", "epochs"), [(0, "COMPLETE", 6), (1, "PRUNED", 2)])
def test_the_first_trial_trains_on_unless_asha_waits_for_a_second(in_tmp, bootstrap, state, epochs):
    from tuning.commands.sweep import run

    overrides = (
        *REHEARSAL,
        "training.max_epochs=6",
        "study.n_trials=2",
        f"pruner.bootstrap_count={bootstrap}",
    )
    summary = run(settings(*overrides))

    first = summary.trials[0]
    assert (first.state, first.user_attrs["epochs_trained"]) == (state, epochs)


# seed 0: ASHA with bootstrap_count=1 prunes all three trials at epoch 2 (without the rule below);
# seed 1: it prunes trials 0 and 2 and completes trial 1.
@pytest.mark.parametrize(
    ("seed", "states", "kept"),
    [(0, ["PRUNED", "PRUNED", "COMPLETE"], True), (1, ["PRUNED", "COMPLETE", "PRUNED"], False)],
)
def test_the_last_trial_is_not_pruned_while_no_trial_has_completed(in_tmp, caplog, seed, states, kept):
    from tuning.commands.sweep import run

    overrides = (*REHEARSAL, "training.max_epochs=3", "study.n_trials=3", "pruner.bootstrap_count=1")
    with caplog.at_level("INFO", logger="tuning"):
        summary = run(settings(*overrides, f"seed={seed}"))

    assert [t.state for t in summary.trials] == states
    assert [t.user_attrs["epochs_trained"] for t in summary.trials] == [
        3 if s == "COMPLETE" else 2 for s in states
    ]
    line = "trial 2: the pruner would stop it at epoch 2; it trains on, as the sweep's last trial with none complete yet"
    assert (line in caplog.text) is kept
    assert (in_tmp / "experiments" / "plants" / "best.yaml").exists()
