"""The engine-neutral trial runner: train one sampled point, check its value, classify a failure.

The search loop (``tuning.search.loop``) calls it for every engine, so a trial means the same
thing whichever engine chose it:
early stopping with the best weights restored, the NaN guard, the value and the gaps measured at
the restored weights, and one rule for which errors end a trial and which stop the sweep.
No TensorFlow at import (it is imported when a trial trains).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuning import interrupts
from tuning.config.schema import TrainingConfig
from tuning.config.space import Hyperparameters, Suggester
from tuning.config.tasks import resolve_metric
from tuning.errors import TrialFailed
from tuning.model.result import FitResult, objective_value
from tuning.redaction import redact
from tuning.search.failures import is_trial_failure
from tuning.search.rehearsal import EpochEnd, simulate_fit
from tuning.study.record import TrialRecord

if TYPE_CHECKING:  # pandas/scikit-learn/TensorFlow: not needed to check a config
    from tuning.data import Dataset

log = logging.getLogger("tuning")

# What a failed trial keeps as user attributes (and a re-run of it must not inherit).
FAIL_ATTRS = ("fail_reason", "traceback", "interrupted")


class TrialRunner:
    """Trains the trials of a sweep: one record per trial, one failure policy."""

    def __init__(
        self,
        dataset: Dataset,
        training: TrainingConfig,
        *,
        metric: str,
        direction: str,
        seed: int,
        folds: int | None = None,
        checkpoints: Path | None = None,
    ) -> None:
        self.dataset = dataset
        # training.checkpoints: each trial's per-epoch checkpoints (search/checkpoints.py) under
        # this folder; not with cv.folds (k fits per trial) or a rehearsal (no model to save).
        simulated = training.simulate_epoch_seconds is not None
        self.checkpoints = None if folds or simulated else checkpoints
        self.folds = folds  # cv.folds: each trial's value is the mean over k folds (search/cv.py)
        self._fold_data: list[Dataset] | None = None
        self.training = training
        self.metric = metric
        self.direction = direction
        self.seed = seed
        self._said: set[str] = set()  # why trials get no kept compiled model, as logged

    def start(self, number: int, hp: Hyperparameters) -> TrialRecord:
        """The record of trial ``number``; its seed is ``seed + number``."""
        return TrialRecord(number, "RUNNING", hp, self.seed + number, start_time=time.time())

    def build_once(self, builder: str, suggester: Suggester) -> None:
        """Build custom model ``builder`` once, its hyperparameters drawn through ``suggester``
        (how an engine learns a builder's names before its first trial); nothing trains."""
        from tuning.model.fit import fresh_session
        from tuning.search.trial import new_model

        fresh_session()
        new_model(replace(Hyperparameters(), builder=builder), self.dataset, suggester=suggester)
        fresh_session()

    def describe(self, record: TrialRecord) -> dict[str, Any]:
        """Attributes an engine stores with the trial before it trains: what its value will mean
        (``metric`` at the restored best weights), so a reader never compares unlike numbers."""
        return {"seed": record.seed, "metric": self.metric, "direction": self.direction}

    def train(
        self,
        record: TrialRecord,
        *,
        epoch_end: EpochEnd | None = None,
        callbacks: Sequence[Any] = (),
        passthrough: tuple[type[BaseException], ...] = (),
        suggester: Suggester | None = None,
    ) -> tuple[float, dict[str, Any]]:
        """Train the record's trial; returns its value and the attributes to store with it.

        ``epoch_end(epoch, logs)``: called after each epoch, whether Keras trains it or a
        rehearsal (``training.simulate_epoch_seconds``) simulates it: the loop's interrupt check
        and pruning report. ``callbacks``: further Keras callbacks (a rehearsal has no model for
        them). ``passthrough``: "stop this trial" exceptions of either (``TrialPruned``),
        re-raised as they are. A trial's own failure (NaN loss, a value that is
        not finite, an error ``is_trial_failure`` accepts) raises ``TrialFailed`` with the reason
        in ``record.error``; any other error is re-raised (a bug of ours or a lost store). A
        Ctrl-C that TensorFlow's C++ layer turned into another error is raised as the interrupt.
        ``suggester``: the engine's trial, through which a custom model's builder draws its
        hyperparameters as it builds; they are added to ``record.hyperparameters`` (``extra``).
        """
        history: dict[str, list[float]] = {}  # every epoch's logs, kept whatever ends the fit
        drawn: dict[str, Any] = {}
        try:
            return self._fit(
                record,
                epoch_end=epoch_end,
                callbacks=callbacks,
                history=history,
                suggester=suggester,
                drawn=drawn,
            )
        except KeyboardInterrupt:
            record.error = "interrupted"
            raise
        except passthrough:
            raise
        except TrialFailed as err:
            record.error = str(err)
            raise
        except Exception as err:
            signalled = interrupts.received()
            if signalled is not None:  # TensorFlow's C++ layer turned a Ctrl-C into this error
                record.error = "interrupted"
                raise signalled from err
            record.error = f"{type(err).__name__}: {err}"
            if is_trial_failure(err):  # this trial's own failure: the study goes on
                raise TrialFailed(record.error) from err
            raise  # a bug of ours or a lost store: the sweep stops
        finally:
            if drawn:  # kept for a failed or pruned build too: its params in MLflow
                record.hyperparameters = replace(record.hyperparameters, extra=drawn)
            record.history = history
            record.seconds = time.time() - record.start_time

    def _fit(
        self,
        record: TrialRecord,
        *,
        epoch_end: EpochEnd | None,
        callbacks: Sequence[Any],
        history: dict[str, list[float]],
        suggester: Suggester | None,
        drawn: dict[str, Any],
    ) -> tuple[float, dict[str, Any]]:
        """Fit (simulated in a rehearsal; over the folds with ``cv.folds``), check the value, and
        list what to store."""
        extras: dict[str, Any] = {}
        result: FitResult
        if self.training.simulate_epoch_seconds is not None:  # no Keras imported
            result = simulate_fit(
                record.hyperparameters,
                self.training,
                task=self.dataset.task,
                monitor=resolve_metric(self.training.early_stopping.monitor, self.dataset.task),
                shape=(
                    self.dataset.n_features,
                    self.dataset.n_classes if self.dataset.task == "multiclass" else 1,
                ),
                history=history,
                epoch_end=epoch_end,
            )
        else:
            result, extras = self._keras_fit(
                record,
                epoch_end=epoch_end,
                callbacks=callbacks,
                history=history,
                suggester=suggester,
                drawn=drawn,
            )
        record.result = result
        record.extras = extras
        if result.diverged_at is not None:
            raise TrialFailed(f"loss became NaN at epoch {result.diverged_at + 1}")
        value = objective_value(result, self.metric)
        if not math.isfinite(value):
            raise TrialFailed(f"{self.metric} is {value}")
        record.value = value
        attrs: dict[str, Any] = {
            "best_epoch": result.best_epoch + 1,
            "epochs_trained": result.epochs_trained,
            "early_stopped": result.early_stopped,
            "n_params": result.n_params,
            "fit_seconds": round(result.seconds, 3),  # the fit alone
            **{f"train_{k}": v for k, v in result.train.items()},
            **{f"val_{k}": v for k, v in result.val.items()},
            **result.gaps,
            **extras,
        }
        return value, attrs

    def _keras_fit(
        self,
        record: TrialRecord,
        *,
        epoch_end: EpochEnd | None,
        callbacks: Sequence[Any],
        history: dict[str, list[float]],
        suggester: Suggester | None,
        drawn: dict[str, Any],
    ) -> tuple[FitResult, dict[str, Any]]:
        from tuning.model.fit import EpochLog
        from tuning.search.trial import EpochEndCallback, fit_trial, why_not_kept

        why = why_not_kept(record.hyperparameters) if self.training.kept_models else None
        if why is not None and why not in self._said:  # once per sweep
            self._said.add(why)
            log.info(why)
        epoch_log = EpochLog()
        epoch_log.history = history
        keras_callbacks = [*([EpochEndCallback(epoch_end)] if epoch_end else []), *callbacks]
        if self.folds:
            return self._cross_validate(record, keras_callbacks, epoch_log, suggester, drawn)
        _, result = fit_trial(
            record.hyperparameters,
            self.dataset,
            self.training,
            seed=record.seed,
            callbacks=keras_callbacks,
            epoch_log=epoch_log,
            suggester=suggester,
            drawn=drawn,
            kept_models=self.training.kept_models,
        )
        return result, {}

    def _cross_validate(
        self,
        record: TrialRecord,
        callbacks: Sequence[Any],
        epoch_log: Any,
        suggester: Suggester | None,
        drawn: dict[str, Any],
    ) -> tuple[FitResult, dict[str, Any]]:
        from tuning.data.folds import make_folds
        from tuning.search.cv import cross_validate

        if self._fold_data is None:  # cut once: every trial sees the same folds
            self._fold_data = make_folds(self.dataset, int(self.folds or 0), self.seed)
        return cross_validate(
            record.hyperparameters,
            self._fold_data,
            self.training,
            seed=record.seed,
            metric=self.metric,
            callbacks=callbacks,
            epoch_log=epoch_log,
            suggester=suggester,
            drawn=drawn,
        )

    def failure_attrs(self, record: TrialRecord, err: BaseException) -> dict[str, Any]:
        """What a failed trial keeps: its reason (redacted) and, unless it is our own NaN/value
        check, the traceback."""
        if isinstance(err, KeyboardInterrupt) or record.error == "interrupted":
            return {"interrupted": True}
        attrs: dict[str, Any] = {"fail_reason": (redact(record.error) or "")[:2000]}
        if not isinstance(err, TrialFailed) or err.__cause__ is not None:
            attrs["traceback"] = redact("".join(traceback.format_exception(err))[-8000:])
        return attrs
