"""`pruner.bootstrap_count` reaches Optuna's ASHA: with 1, the first trial stops at the first
rung (epoch 2) instead of training on because nothing was there to compare it with."""

from __future__ import annotations

import pytest
from conftest import settings

# A rehearsal (no TensorFlow): each epoch reports a value made from the trial's parameters.
ONE_TRIAL = ("training.simulate_epoch_seconds=0", "training.max_epochs=6", "study.n_trials=1")


@pytest.mark.parametrize(("bootstrap", "state", "epochs"), [(0, "COMPLETE", 6), (1, "PRUNED", 2)])
def test_the_first_trial_trains_on_unless_asha_waits_for_a_second(in_tmp, bootstrap, state, epochs):
    from tuning.commands.sweep import run

    summary = run(settings(*ONE_TRIAL, f"pruner.bootstrap_count={bootstrap}"))

    (trial,) = summary.trials
    assert (trial.state, trial.user_attrs["epochs_trained"]) == (state, epochs)
