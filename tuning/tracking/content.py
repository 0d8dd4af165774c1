"""What goes into the sweep's MLflow runs: tags, params and metrics of the parent and of each
trial's child run, and the batches they are sent in. Pure functions of the study and records."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from tuning.model.metrics import epoch_gaps
from tuning.payload import Payload, RawConfig
from tuning.redaction import redact
from tuning.study.summary import StudySummary, TrialSummary

if TYPE_CHECKING:
    from tuning.config import Settings
    from tuning.config.schema import TrainingConfig
    from tuning.study.record import TrialRecord

STUDY_TAG, ROLE_TAG, TRIAL_TAG, STATE_TAG = "tuning.study", "tuning.role", "tuning.trial", "tuning.state"
PARENT_TAG = "mlflow.parentRunId"
BEST_PREFIX = "best."  # parent tags holding the best trial's parameters (tags: they change)
STOP_TAG = "tuning.stop"  # on the sweep run: the stop=converged line, when the sweep stopped so
BEST_TAG = "tuning.best"  # "true" on the best trial's child run (named "trial-0007 ★ best")
NOTE_TAG = "mlflow.note.content"  # a run's or experiment's description; the UI renders Markdown
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
MAX_TAG_TEXT = 5000
MAX_PARAM_TEXT = 6000
# What a tracking store can raise that is not a bug of ours: MLflow's own errors, a lost
# connection or file (requests' errors are OSErrors).
TRACKING_ERRORS = (MlflowException, OSError)
RUN_PREFIX = "tuning.run."  # one parent tag per command that ran on the study


def run_status(record: TrialRecord) -> str:
    """MLflow status of a trial's run: a Ctrl-C'd trial is KILLED, a pruned one FINISHED."""
    if record.state == "FAIL" and record.error == "interrupted":
        return "KILLED"
    return STATUS.get(record.state, "FAILED")


def next_invocation(tags: Mapping[str, str]) -> str:
    """``tuning.run.<k>``: the next free entry for this command on the parent run."""
    taken = [
        int(k.removeprefix(RUN_PREFIX))
        for k in tags
        if k.startswith(RUN_PREFIX) and k[len(RUN_PREFIX) :].isdigit()
    ]
    return f"{RUN_PREFIX}{max(taken, default=0) + 1}"


def invocation_text(settings: Settings, study: StudySummary, started: float) -> str:
    """When this command started, its overrides (credentials redacted) and its search settings."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    overrides = " ".join(redact(o) or "" for o in _command_overrides()) or "(none)"
    return (
        f"{when} {socket.gethostname()}:{os.getpid()}; overrides: {overrides}; n_trials={settings.study.n_trials} "
        f"sampler={settings.sampler.name} pruner={settings.pruner.name}; "
        f"{len(study.trials)} trials before"
    )


def _command_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # called from Python, not the command line
        return []
    return list(HydraConfig.get().overrides.task)


# Per-epoch series go under this prefix ("while_training/val_log_loss"); the plain name is the
# restored weights' value. Why a prefix, and why this one:
# - Not the headline key with steps (MLflow's own per-step history): the UI shows a metric's
#   latest step, which is the last epoch, not the restored best weights' value the headline is.
# - Not "epoch/": it sorts before "gap_*", and "epoch/gap_log_loss" (dropout on, averaged over
#   the epoch) was read as the headline gap, sometimes with the opposite sign.
# - MLflow allows only letters, digits, "_", "-", ".", " ", ":" and "/" in names (no "~"), and
#   sorts metric names by code point or case-insensitively depending on the view and the
#   store: an all-lowercase word from "w" on sorts after every headline name ("val_*" included)
#   either way, and "while_training" says what the values are (the Keras history).
EPOCH = "while_training/"


def stored_trial_metrics(trial: Any, timestamp: int) -> list[Metric]:
    """A back-filled trial's values, from the study: the same headline metrics as a live trial's
    child run, and the objective per epoch that the pruner saw (the Keras history is gone)."""
    values: dict[str, float] = {}
    if trial.value is not None:
        values["objective"] = trial.value
    for key, v in trial.user_attrs.items():
        if not isinstance(v, (int, float)) or key in ("seed", "retry_of"):
            continue
        values[key.removeprefix("train_")] = float(v)  # train_loss -> loss, val_loss stays
    values.update(fold_values(trial.user_attrs))
    metrics = [Metric(k, v, timestamp, 0) for k, v in values.items()]
    metric = trial.user_attrs.get("metric")
    name = f"{EPOCH}{metric}" if isinstance(metric, str) else f"{EPOCH}objective"
    return metrics + [
        Metric(name, float(v), timestamp, int(step) + 1)
        for step, v in sorted(trial.intermediate_values.items())
    ]


def trial_run_name(number: int, state: str | None = None, *, best: bool = False) -> str:
    """``trial-0007``; the runs table tells outcomes apart by name too: ``trial-0003 pruned``,
    ``trial-0004 failed``, ``trial-0005 interrupted``, and the study's best ``trial-0007 ★ best``."""
    name = f"trial-{number:04d}"
    if best:
        return f"{name} ★ best"
    suffix = {"PRUNED": "pruned", "FAIL": "failed", "KILLED": "interrupted"}.get(state or "")
    return f"{name} {suffix}" if suffix else name


def trial_tags(study_name: str, record: TrialRecord) -> dict[str, str]:
    tags = {
        STUDY_TAG: study_name,
        ROLE_TAG: "trial",
        TRIAL_TAG: str(record.number),
        STATE_TAG: record.state,
    }
    if record.error:
        tags["tuning.fail_reason"] = (redact(record.error) or "")[:MAX_TAG_TEXT]
    return tags


def trial_metrics(record: TrialRecord, timestamp: int) -> list[Metric]:
    """The headline values (step 0) and the per-epoch series (step = epoch, from 1).

    Headline, under the plain names a user sorts by: the fit measured at the restored best
    weights without dropout (``loss``, ``log_loss``, ``accuracy``, ... on train; ``val_<name>``
    on validation; their ``gap_<name>``), ``objective``, ``best_epoch``, ``epochs_trained``,
    ``early_stopped``, ``n_params``, ``seconds``. Per epoch, under ``while_training/``: the
    Keras history (``while_training/loss``, ``while_training/val_log_loss``, ...) and the gap
    per epoch (``while_training/gap_<name>``), for the charts.
    """
    history = record.history
    per_epoch = {**history, **epoch_gaps(history)}
    metrics = [
        Metric(f"{EPOCH}{key}", float(v), timestamp, step)
        for key, values in per_epoch.items()
        for step, v in enumerate(values, start=1)
        if v is not None
    ]
    # Headline first: a run's overview lists its metrics in the order the store received them
    # (MLflow 3.17 on SQLite), so the values that rank the trial come before its history.
    return [Metric(k, float(v), timestamp, 0) for k, v in final_values(record).items()] + metrics


def final_values(record: TrialRecord) -> dict[str, float]:
    values: dict[str, float] = {
        "epochs_trained": len(record.history.get("loss", [])),
        "seconds": round(record.seconds, 3),
    }
    if record.value is not None:
        values["objective"] = record.value
    result = record.result
    if result is not None and record.state == "COMPLETE":  # a pruned fit never restored its best
        values.update(
            best_epoch=result.best_epoch + 1,
            epochs_trained=result.epochs_trained,
            early_stopped=float(result.early_stopped),
            n_params=result.n_params,
        )
        values.update(result.train)
        values.update({f"val_{k}": v for k, v in result.val.items()})
        values.update(result.gaps)
        values.update(fold_values(record.extras))
    return values


def fold_values(extras: Payload) -> dict[str, float]:
    """cv.folds: ``cv_fold_<k>`` (the metric on fold k, from 1), ``cv_std`` and ``cv_folds``."""
    values = {f"cv_fold_{k}": float(v) for k, v in enumerate(extras.get("cv_values") or (), start=1)}
    for key in ("cv_std", "cv_folds"):
        if isinstance(extras.get(key), (int, float)):
            values[key] = float(extras[key])
    return values


def selection_tags(marks: Payload) -> dict[str, str]:
    """A child run's ``tuning.feasible`` (true/false) and ``tuning.pareto_rank`` (0 = front)."""
    tags = {}
    if "feasible" in marks:
        tags["tuning.feasible"] = "true" if marks["feasible"] else "false"
    if "pareto_rank" in marks:
        tags["tuning.pareto_rank"] = str(marks["pareto_rank"])
    return tags


def best_values(trial: Any) -> dict[str, float]:
    """The parent run's headline: the best trial's values at its restored weights, under the
    names its child run uses, so the parent reads as the study's result."""
    values: dict[str, float] = {}
    for key, v in trial.user_attrs.items():
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and key.startswith(("train_", "val_", "gap_"))
        ):
            values[key.removeprefix("train_")] = float(v)
    return values


def best_line(best: TrialSummary, metric: str, run_id: str, experiment_id: str) -> str:
    """One Markdown line: the study's best trial, a link to its run (relative to the UI's page,
    so it works on any host), its value, gap and epochs. It leads the sweep run's description
    and the experiment's, which the runs table shows above the runs when it opens."""
    attrs = best.user_attrs
    link = f"[{trial_run_name(best.number, best=True)}](#/experiments/{experiment_id}/runs/{run_id})"
    values = [f"{metric} **{best.value:.4f}**" if best.value is not None else f"{metric} ?"]
    name = metric.removeprefix("val_")
    gap = attrs.get(f"gap_{name}")
    if isinstance(gap, (int, float)):
        values.append(f"gap_{name} {gap:+.4f} (positive: overfits)")
    if isinstance(attrs.get("best_epoch"), int) and isinstance(attrs.get("epochs_trained"), int):
        values.append(f"best epoch {attrs['best_epoch']} of {attrs['epochs_trained']} trained")
    return f"**Best: trial {best.number}** ({link}): " + ", ".join(values)


def with_best(description: str, line: str) -> str:
    """``description`` led by the best trial's ``line``; an earlier best line is replaced."""
    if description.startswith("**Best: trial "):
        description = description.split("\n\n", 1)[1] if "\n\n" in description else ""
    return f"{line}\n\n{description}" if description else line


def experiment_description(space: RawConfig, metric: str, study: StudySummary) -> str:
    """What the experiments list shows for the study: data, task, what ranks trials (``metric``:
    ``study.metric``), the space.

    ``space`` is the ``search_space`` section as composed, not the parsed ``SearchSpace``: the
    description shows the space as the user wrote it, in its order (``choices: auto`` reads
    "every one that fits the task", a one-choice list stays a list), which the parsed space,
    with ``auto`` resolved for the task and one-choice lists made fixed values, no longer holds.
    """
    attrs = study.user_attrs
    text = ", ".join(
        f"{k} {v['low']}..{v['high']}" if isinstance(v, Mapping) and "low" in v
        else f"{k}: every one that fits the task" if isinstance(v, Mapping) and v.get("choices") == "auto"
        else f"{k} in {v['choices']}" if isinstance(v, Mapping) and "choices" in v
        else f"{k}={v}"
        for k, v in space.items()
    )  # fmt: skip
    return (
        f"Study '{study.name}': {attrs.get('task', '?')} task on data '{attrs.get('data', '?')}'; "
        f"trials ranked by {metric} ({study.direction}) on the "
        f"validation split at the restored best weights. Search space: {text}. The run 'sweep' "
        "holds the study's best; one child run per trial, the best named '★ best'."
    )


def trial_fixed_params(training: TrainingConfig, metric: str, study: StudySummary) -> dict[str, Any]:
    """The settings every trial shares that matter to compare them (``metric``: ``study.metric``)."""
    stopping = training.early_stopping
    values = {
        "data": study.user_attrs.get("data"),
        "task": study.user_attrs.get("task"),
        "metric": metric,
        "max_epochs": training.max_epochs,
        "patience": stopping.patience,
        "monitor": stopping.monitor,
    }
    return {k: v for k, v in values.items() if k in ("max_epochs", "patience") or v is not None}


def parent_params(metric: str, study: StudySummary) -> dict[str, Any]:
    """What a study keeps for life (params in MLflow cannot change on resume): the metric (the
    study's own, else ``metric``: ``study.metric``), direction, data and task, and the study's
    identity as created (``tuning.identity``)."""
    values: dict[str, Any] = {
        "metric": study.user_attrs.get("metric", metric),
        "direction": study.direction,
        "engine": study.engine,
        "data": study.user_attrs.get("data"),
        "task": study.user_attrs.get("task"),
    }
    selection = study.user_attrs.get("selection") or {}
    values.update(
        selection=selection.get("mode", "best"),
        max_gap=selection.get("max_gap"),
        cv_folds=study.user_attrs.get("cv_folds"),
    )
    for key, value in (study.user_attrs.get("identity") or {}).items():
        text = value if isinstance(value, str) else json.dumps(value)
        values.setdefault(key, (redact(text) or "")[:MAX_PARAM_TEXT])
    return {k: v for k, v in values.items() if v is not None}


def parent_tags(settings: Settings, study: StudySummary, storage_url: str) -> dict[str, str]:
    """What the study was made with, set when the parent run is created and never overwritten by
    a later command (each command gets its own ``tuning.run.<k>`` entry); credentials redacted."""
    return {
        STUDY_TAG: study.name,
        ROLE_TAG: "sweep",
        "tuning.engine": study.engine,
        "tuning.storage": redact(storage_url) or "",
        "tuning.sampler": settings.sampler.name,
        "tuning.pruner": settings.pruner.name,
        "tuning.n_trials": str(settings.study.n_trials),
        "tuning.seed": str(settings.seed),
        NOTE_TAG: (
            f"Sweep of study '{study.name}' ({study.direction} "
            f"{settings.study.metric}): one child run per trial. Artifacts: trials.csv, "
            "plots/*.png (the engine's), learning_curves.png, config.yaml."
        ),
    }


def batches(
    metrics: list[Metric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Split into ``log_batch`` calls within MLflow's limits (1000 metrics, 100 params/tags, 1000 in all)."""
    while metrics or params or tags:
        p, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        t, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        yield m, p, t
