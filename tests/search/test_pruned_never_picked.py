"""A pruned trial is never the pick: Optuna gives a pruned trial a value (its last reported one),
often better than any complete trial's, since it stopped early on a lucky epoch; the picked trial
must be one that trained to its end (issue 32)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from tuning.config.selection import SELECTION_ATTR
from tuning.search.engines.optuna_study import summarize
from tuning.study.selection import pick, selection_of


@pytest.mark.parametrize(("mode", "max_gap"), [("best", None), ("constrained", 0.1), ("pareto", None)])
def test_a_pruned_trial_with_the_best_value_is_never_picked(mode, max_gap):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    study.set_user_attr(SELECTION_ATTR, {"mode": mode, "max_gap": max_gap})
    for value, state in [(0.5, "COMPLETE"), (0.1, "PRUNED"), (0.4, "COMPLETE")]:
        trial = study.ask()
        trial.set_user_attr("gap_log_loss", 0.0)
        trial.report(value, 0)
        if state == "PRUNED":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    summary = summarize(study)
    assert [(t.state, t.value) for t in summary.trials] == [
        ("COMPLETE", 0.5),
        ("PRUNED", 0.1),
        ("COMPLETE", 0.4),
    ], "Optuna keeps the pruned trial's last value"
    assert summary.best().number == 2
    assert pick(summary, selection_of(summary))[0].number == 2
    # tuning report's reader has no engine pick: the same rule on the records
    assert dataclasses.replace(summary, best_number=None).best().number == 2
