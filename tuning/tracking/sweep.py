"""The sweep's MLflow observer: one parent run per study, one child run per trial, values in batches.

Layout in the store: an experiment named after the study; in it a parent run (tags
``tuning.study=<name>``, ``tuning.role=sweep``) found again when the study resumes; under it a
child run ``trial-0007`` per finished trial (tag ``mlflow.parentRunId``), written once the trial
has ended, with its real start and end times.

Run status: COMPLETE and PRUNED trials end FINISHED (the tag ``tuning.state`` tells them apart:
pruning is a normal outcome of a search, not an error), FAIL ends FAILED, a trial stopped by
Ctrl-C ends KILLED. The parent ends FINISHED, KILLED on Ctrl-C, FAILED when the sweep stops on
an error, and is set RUNNING again when the study resumes.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from tuning.metrics import epoch_gaps
from tuning.report import Table, trials_table, write_csv
from tuning.storage import first_line, redact
from tuning.summary import from_study, state_counts
from tuning.tracking.artifacts import write_config, write_learning_curves, write_plots
from tuning.tracking.client import Tracking, artifact_location, experiment_id, is_server, ui_command

if TYPE_CHECKING:
    from tuning.record import TrialRecord

log = logging.getLogger("tuning")

STUDY_TAG, ROLE_TAG, TRIAL_TAG, STATE_TAG = "tuning.study", "tuning.role", "tuning.trial", "tuning.state"
PARENT_TAG = "mlflow.parentRunId"
BEST_PREFIX = "best."  # parent tags holding the best trial's parameters (tags: they change)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
MAX_TAG_TEXT = 5000


def start_sweep_tracking(
    tracking: Tracking | None,
    settings: Mapping[str, Any],
    study: optuna.Study,
    storage_url: str,
) -> MlflowSweepTracker | None:
    """The study's parent run, created or reopened (RUNNING); None when tracking is off."""
    if tracking is None:
        return None
    return MlflowSweepTracker.start(tracking, settings, study, storage_url)


def _own_or_first_parent(client: Any, exp: str, where: str, created: Any) -> Any:
    """The study's parent run once this worker has made one: the first made wins.

    Workers that start a new study together each find no parent run and create one; each
    then looks again, and every worker but the first deletes its own and joins the first
    (earliest start time, then run id: the same answer in every worker).
    """
    parents = client.search_runs([exp], where, max_results=100)
    first = min(parents, key=lambda r: (r.info.start_time, r.info.run_id), default=created)
    if first.info.run_id != created.info.run_id:
        client.delete_run(created.info.run_id)
        log.info(f"MLflow: joining sweep run {first.info.run_id} that another worker started")
    return first


def trial_run_name(number: int) -> str:
    return f"trial-{number:04d}"


class MlflowSweepTracker:
    """A TrialObserver: logs each finished trial as a child run and keeps the parent's best current."""

    def __init__(
        self,
        tracking: Tracking,
        settings: Mapping[str, Any],
        study_name: str,
        experiment: str,
        run_id: str,
        *,
        children: dict[int, str],
        best_tags: set[str],
    ) -> None:
        self.client = tracking.client
        self.uri = tracking.uri
        self.options = tracking.options
        self.settings = settings
        self.study_name = study_name
        self.experiment_id = experiment
        self.run_id = run_id
        self.children = children
        self.best_tags = best_tags
        self.fixed_params: dict[str, Any] = {}

    @classmethod
    def start(
        cls,
        tracking: Tracking,
        settings: Mapping[str, Any],
        study: optuna.Study,
        storage_url: str,
    ) -> MlflowSweepTracker:
        client, name = tracking.client, study.study_name
        exp = experiment_id(client, name, artifact_location(tracking.uri))
        where = f"tags.`{ROLE_TAG}` = 'sweep' and tags.`{STUDY_TAG}` = '{name}'"
        found = client.search_runs([exp], where, max_results=1, order_by=["attributes.start_time ASC"])
        tags = parent_tags(settings, study, storage_url)
        params = parent_params(settings, study)
        if found:
            run = found[0]
            client.update_run(run.info.run_id, status="RUNNING")
            params = {k: v for k, v in params.items() if k not in run.data.params}  # params never change
            log.info(f"MLflow: resuming sweep run {run.info.run_id} in experiment '{name}'")
        else:
            run = _own_or_first_parent(
                client, exp, where, client.create_run(exp, run_name="sweep", tags=tags)
            )
        best_tags = {k for k in run.data.tags if k.startswith(BEST_PREFIX)}
        tracker = cls(
            tracking,
            settings,
            name,
            exp,
            run.info.run_id,
            children=_child_runs(client, exp, name),
            best_tags=best_tags,
        )
        tracker.fixed_params = trial_fixed_params(settings, study)
        tracker._log(run.info.run_id, params=params, tags=tags)
        return tracker

    # --- TrialObserver -------------------------------------------------------------------

    def on_trial_end(self, study: optuna.Study, record: TrialRecord) -> None:
        """Log the trial as a child run, then refresh the parent's best. Never stops the sweep."""
        try:
            self.children[record.number] = self._log_trial(record)
            self._log_progress(study, record)
        except Exception as err:  # the study storage keeps everything: a tracking hiccup is not fatal
            log.warning(f"MLflow: trial {record.number} not fully logged: {_one_line(err)}")

    def _log_trial(self, record: TrialRecord) -> str:
        start_ms = int(record.start_time * 1000)
        end_ms = int((record.start_time + record.seconds) * 1000)
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_ms,
            run_name=trial_run_name(record.number),
            tags={**trial_tags(self.study_name, record), PARENT_TAG: self.run_id},
        )
        run_id = run.info.run_id
        params = {**record.hyperparameters.as_params(), "seed": record.seed, **self.fixed_params}
        self._log(run_id, metrics=trial_metrics(record, end_ms), params=params)
        self.client.set_terminated(run_id, status=run_status(record), end_time=end_ms)
        return run_id

    def _log_progress(self, study: optuna.Study, record: TrialRecord) -> None:
        """Parent: this trial's objective, best so far (step = trial number), counts, best params."""
        now, step = _now_ms(), record.number
        counts = state_counts(t.state.name for t in study.get_trials(deepcopy=False))
        values: dict[str, float] = {f"n_{state.lower()}": counts.get(state, 0) for state in STATUS}
        tags: dict[str, str] = {}
        if record.value is not None:
            values["objective"] = record.value
        try:
            best = study.best_trial
        except ValueError:
            best = None
        if best is not None:
            values.update(best_objective=float(best.value), best_trial=best.number)
            tags = {f"{BEST_PREFIX}{k}": str(v) for k, v in best.params.items()}
            tags["tuning.best_trial"] = str(best.number)
            if best.number in self.children:
                tags["tuning.best_trial_run_id"] = self.children[best.number]
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self._log(self.run_id, metrics=metrics, tags=tags)
        for stale in sorted(self.best_tags - set(tags)):  # e.g. units_2 when the new best has 2 layers
            self.client.delete_tag(self.run_id, stale)
        self.best_tags = {k for k in tags if k.startswith(BEST_PREFIX)}

    # --- end of the sweep ----------------------------------------------------------------

    def finish(self, study: optuna.Study, status: str = "FINISHED") -> None:
        """End the parent run (FINISHED, KILLED or FAILED), then attach the sweep's artifacts."""
        try:
            self.client.set_terminated(self.run_id, status=status)
            self._log_artifacts(study)
        except Exception as err:  # never hide the sweep's own outcome (or its Ctrl-C) behind this
            log.warning(f"MLflow: sweep run not fully closed: {_one_line(err)}")

    def ui_hint(self) -> str:
        """Where to look at the runs: the command that opens the UI, or the server's page."""
        if is_server(self.uri):
            page = f"{redact(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}"
            return f"MLflow runs of study '{self.study_name}': open {page}"
        return (
            f"MLflow runs of study '{self.study_name}': {ui_command(self.uri)} "
            f"(then open http://127.0.0.1:5000/#/experiments/{self.experiment_id})"
        )

    def _log_artifacts(self, study: optuna.Study) -> None:
        with tempfile.TemporaryDirectory(prefix="tuning-mlflow-") as tmp:
            folder = Path(tmp)
            table = trials_table(from_study(study))
            write_csv(table, folder / "trials.csv")
            write_config(self.settings, folder / "config.yaml")
            write_plots(study, folder / "plots", str(self.options.get("plotlyjs", "none")))
            top = int(self.options.get("learning_curves", 4))
            if top:
                write_learning_curves(self._curves(table, top), folder / "learning_curves.png")
            self.client.log_artifacts(self.run_id, tmp)

    def _curves(self, table: Table, top: int) -> list[tuple[str, dict[str, list[float]], int | None]]:
        """Train and validation loss per epoch of the best ``top`` complete trials, read back from MLflow."""
        metric = table.columns[2]
        curves = []
        for row in [r for r in table.records() if r["state"] == "COMPLETE"][:top]:
            run_id = self.children.get(int(row["trial"]))
            if run_id is None:
                continue
            history = {key: self._history(run_id, key) for key in ("loss", "val_loss")}
            title = f"trial {row['trial']}: {metric} {row[metric]:.4g}"
            if row.get("gap_loss") is not None:
                title += f", gap_loss {row['gap_loss']:.3g} at the best weights"
            best = row.get("best_epoch")
            curves.append((title, history, None if best is None else int(best)))
        return curves

    def _history(self, run_id: str, key: str) -> list[float]:
        return [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]

    def _log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Everything in as few ``log_batch`` calls as MLflow's limits allow."""
        param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for m, p, t in batches(list(metrics), param_list, tag_list):
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)


# --- what goes into the runs ---------------------------------------------------------------


def run_status(record: TrialRecord) -> str:
    """MLflow status of a trial's run: a Ctrl-C'd trial is KILLED, a pruned one FINISHED."""
    if record.state == "FAIL" and record.error == "interrupted":
        return "KILLED"
    return STATUS.get(record.state, "FAILED")


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
    """Per-epoch values (step = epoch, from 1) and the final values (step 0).

    Per epoch: the Keras history (``loss``, ``val_loss``, metrics and ``val_`` twins) and the
    gap per epoch (``epoch_gap_<name>``). Final: the fit measured at the restored best weights
    without dropout (``best_train_<name>``, ``best_val_<name>``, their ``gap_<name>``), the
    ``objective``, ``best_epoch``, ``epochs_trained``, ``early_stopped``, ``n_params``, ``seconds``.
    """
    history = record.history
    per_epoch = {**history, **{f"epoch_{k}": v for k, v in epoch_gaps(history).items()}}
    metrics = [
        Metric(key, float(v), timestamp, step)
        for key, values in per_epoch.items()
        for step, v in enumerate(values, start=1)
        if v is not None
    ]
    return metrics + [Metric(k, float(v), timestamp, 0) for k, v in final_values(record).items()]


def final_values(record: TrialRecord) -> dict[str, float]:
    values: dict[str, float] = {
        "epochs_trained": len(record.history.get("loss", [])),
        "seconds": round(record.seconds, 3),
    }
    if record.value is not None:
        values["objective"] = record.value
    result = record.result
    if result is not None:
        values.update(
            best_epoch=result.best_epoch + 1,
            epochs_trained=result.epochs_trained,
            early_stopped=float(result.early_stopped),
            n_params=result.n_params,
        )
        values.update({f"best_train_{k}": v for k, v in result.train.items()})
        values.update({f"best_val_{k}": v for k, v in result.val.items()})
        values.update(result.gaps)
    return values


def trial_fixed_params(settings: Mapping[str, Any], study: optuna.Study) -> dict[str, Any]:
    """The settings every trial shares that matter to compare them."""
    training = settings["training"]
    stopping = training.get("early_stopping") or {}
    values = {
        "data": study.user_attrs.get("data"),
        "task": study.user_attrs.get("task"),
        "metric": settings["study"]["metric"],
        "max_epochs": training.get("max_epochs"),
        "patience": stopping.get("patience"),
        "monitor": stopping.get("monitor"),
    }
    return {k: v for k, v in values.items() if k in ("max_epochs", "patience") or v is not None}


def parent_params(settings: Mapping[str, Any], study: optuna.Study) -> dict[str, Any]:
    """What a study keeps for life (params in MLflow cannot change on resume)."""
    values = {
        "metric": study.user_attrs.get("metric", settings["study"]["metric"]),
        "direction": study.direction.name.lower(),
        "data": study.user_attrs.get("data"),
        "task": study.user_attrs.get("task"),
    }
    return {k: v for k, v in values.items() if v is not None}


def parent_tags(settings: Mapping[str, Any], study: optuna.Study, storage_url: str) -> dict[str, str]:
    """What may change when the study resumes (tags can be overwritten); credentials redacted."""
    return {
        STUDY_TAG: study.study_name,
        ROLE_TAG: "sweep",
        "tuning.storage": redact(storage_url) or "",
        "tuning.sampler": str(settings["sampler"].get("name")),
        "tuning.pruner": str(settings["pruner"].get("name")),
        "tuning.n_trials": str(settings["study"]["n_trials"]),
        "tuning.seed": str(settings["seed"]),
        "mlflow.note.content": (
            f"Sweep of study '{study.study_name}' ({study.direction.name.lower()} "
            f"{settings['study']['metric']}): one child run per trial. Artifacts: trials.csv, "
            "plots/*.png (Optuna), learning_curves.png, config.yaml."
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


def _child_runs(client: Any, experiment: str, study_name: str) -> dict[int, str]:
    """Trial number -> run id of the study's child runs already in the store (resume)."""
    where = f"tags.`{ROLE_TAG}` = 'trial' and tags.`{STUDY_TAG}` = '{study_name}'"
    found: dict[int, str] = {}
    token = None
    while True:
        page = client.search_runs([experiment], where, max_results=1000, page_token=token)
        for run in page:
            number = run.data.tags.get(TRIAL_TAG, "")
            if number.isdigit():
                found[int(number)] = run.info.run_id
        token = page.token
        if not token:
            return found


def _now_ms() -> int:
    return int(time.time() * 1000)


def _one_line(err: Exception) -> str:
    return first_line(err)[:300]
