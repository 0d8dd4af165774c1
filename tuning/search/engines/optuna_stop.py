"""``stop=converged`` on an Optuna study: Optuna's terminator (``optuna.terminator``), asked
between trials with the study's trials as they stand (every worker's, every earlier run's).

``stagnation`` (the default) is Optuna's ``BestValueStagnationEvaluator`` against a zero
``StaticErrorEvaluator``, the pairing ``Terminator`` itself makes for it: stop once ``patience``
completed trials in a row did not beat the best (Optuna counts COMPLETE trials only: a pruned
trial neither resets nor extends the count). ``regret_bound`` is Optuna's
``RegretBoundEvaluator`` (a Gaussian process's bound on how much the best can still improve)
against ``MedianErrorEvaluator`` (a fraction of that bound's early median), as Optuna pairs its
GP evaluators without cross-validation scores; Optuna's GP code needs PyTorch, checked with the
config. Optuna 4.9 deprecated the module (to move to OptunaHub, removal planned for Optuna 6):
``Terminator`` warns ``FutureWarning`` once per construction, silenced here.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from tuning.config.schema import StopConfig
from tuning.errors import ConfigError
from tuning.search.engines.base import Convergence


def check_terminator(rule: StopConfig, *, two_objectives: bool) -> None:
    """Refuse, in one line, a ``stop=converged`` this Optuna cannot run (no data, no TensorFlow)."""
    if not rule.converged:
        return
    if importlib.util.find_spec("optuna.terminator") is None:
        raise ConfigError(
            "stop",
            f"converged uses optuna.terminator, which Optuna {optuna.__version__} no longer has; "
            "install optuna<6, or use stop=none",
        )
    if two_objectives:
        raise ConfigError(
            "stop",
            "converged judges one objective; selection=pareto has two: use selection=best or "
            "constrained, or stop=none",
        )


class ConvergedStop:
    """Optuna's ``Terminator`` for ``rule``, and its two evaluators for the estimate it stopped on.

    It says stop once ``rule.min_trials`` trials completed and the improvement evaluator's
    estimate of the room left falls below the error evaluator's."""

    def __init__(self, rule: StopConfig, seed: int | None = None) -> None:
        from optuna.terminator import (
            BestValueStagnationEvaluator,
            MedianErrorEvaluator,
            RegretBoundEvaluator,
            StaticErrorEvaluator,
            Terminator,
        )

        self.rule = rule
        with warnings.catch_warnings():  # the module's deprecation (Optuna 4.9), said in the docs
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if rule.evaluator == "regret_bound":
                self.improvement: Any = RegretBoundEvaluator(seed=seed)
                self.error: Any = MedianErrorEvaluator(paired_improvement_evaluator=self.improvement)
            else:  # `patience` completed trials without a new best: Optuna allows patience - 1
                self.improvement = BestValueStagnationEvaluator(max_stagnation_trials=rule.patience - 1)
                self.error = StaticErrorEvaluator(constant=0)
            self.terminator = Terminator(
                improvement_evaluator=self.improvement,
                error_evaluator=self.error,
                min_n_trials=rule.min_trials,
            )

    def check(self, study: optuna.Study) -> Convergence | None:
        """Ask the terminator about ``study``; when it says stop, why and the estimate then."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if not self.terminator.should_terminate(study):
                return None
            estimate = self._estimate(study) if self.rule.evaluator == "regret_bound" else ""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = complete[0]  # the first to reach the best value, as Optuna's evaluator counts
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        for trial in complete:
            if sign * float(trial.value or 0.0) < sign * float(best.value or 0.0):
                best = trial
        value, since = float(best.value or 0.0), sum(t.number > best.number for t in complete)
        rule = self.rule
        if estimate:
            why = (
                f"{estimate}: more trials are unlikely to beat the best ({value:.4g}, trial {best.number}) "
                f"by more than the noise ({len(complete)} completed, min {rule.min_trials})"
            )
        else:
            why = (
                f"no improvement over the best ({value:.4g}, trial {best.number}) in the last {since} "
                f"completed trial{'' if since == 1 else 's'} (patience {rule.patience}, min {rule.min_trials} completed)"
            )
        return Convergence(why, best.number, value, len(complete))

    def _estimate(self, study: optuna.Study) -> str:
        trials = study.get_trials(deepcopy=False)
        bound = self.improvement.evaluate(trials, study.direction)
        error = self.error.evaluate(trials, study.direction)
        return f"regret bound {bound:.4g} < error {error:.4g}"
