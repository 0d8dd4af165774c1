"""`tuning sweep`: validate, load the data, run the study, print the best trials, export best.yaml."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tuning.backend import start_tensorflow
from tuning.cli_support import HYDRA_PASSTHROUGH, crash, fail, redact_hydra_files, run_hydra_app
from tuning.config import (
    compose,
    conf_dir,
    for_task,
    resolved,
    storage_url,
    validate,
    validate_for_task,
)
from tuning.errors import ConfigError
from tuning.files import check_writable_folder
from tuning.logs import quiet_terminal
from tuning.space import SearchSpace
from tuning.storage import check_storage
from tuning.tasks import TASKS
from tuning.tracking.client import check_tracking, connect_tracking

log = logging.getLogger("tuning")


def check(settings: Mapping[str, Any], *, reach_server: bool = False) -> tuple[SearchSpace, Any, Any]:
    """Every check that needs no data: config values, sampler and pruner options, the storage
    URL (with ``reach_server``, that its database answers), and the losses and metric against
    the task when ``data.task`` is set. Returns the space, sampler and pruner."""
    space = validate(settings)  # before importing Optuna: most mistakes are caught here, fast
    from tuning.engines.optuna import make_pruner, make_sampler

    sampler = make_sampler(settings["sampler"])
    pruner = make_pruner(settings["pruner"])
    check_storage(storage_url(settings["study"], settings["paths"]["study_dir"]), reach_server=reach_server)
    task = settings["data"].get("task")
    if task in TASKS:
        space = validate_for_task(settings, space, task)
    return space, sampler, pruner


def run(settings: Mapping[str, Any]) -> Any:
    """Run (or resume) the sweep described by a resolved config; returns the Optuna study."""
    import optuna
    from optuna.trial import FixedTrial

    from tuning.data import load_dataset
    from tuning.engines.optuna import (
        Objective,
        fail_stale_trials,
        finished_count,
        open_study,
        requeue_interrupted,
        run_trials,
    )
    from tuning.export import best_config, write_yaml
    from tuning.progress import Progress
    from tuning.report import format_table, trials_table
    from tuning.storage import redact
    from tuning.summary import counts_line, from_study

    # Our progress lines report every trial (failures with their reason, tracebacks are kept
    # in the trial's user attributes): Optuna's own per-trial logs would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    space, sampler, pruner = check(settings)
    tracking = connect_tracking(settings)  # before the data: an unreachable MLflow store stops here
    dataset = load_dataset(settings["data"], settings["split"], int(settings["seed"]))
    space = validate_for_task(settings, space, dataset.task)
    settings = for_task(settings, dataset.task)  # `auto` metrics named: what ranks trials is stored

    study_cfg = dict(settings["study"])
    study_dir = Path(settings["paths"]["study_dir"])
    url = storage_url(study_cfg, study_dir)
    study = open_study(
        study_cfg,
        url,
        sampler,
        pruner,
        user_attrs={
            "metric": study_cfg["metric"],
            "task": dataset.task,
            "data": dataset.name,
            "class_names": dataset.class_names,
        },
    )
    tracker = None
    if tracking is not None:  # mlflow is imported only when tracking is on
        from tuning.tracking.sweep import start_sweep_tracking

        tracker = start_sweep_tracking(tracking, settings, study, url)
    n_trials = int(study_cfg["n_trials"])
    done = finished_count(study)
    log.info(dataset.summary())
    log.info(f"study '{study.study_name}' in {redact(url)}: {done}/{n_trials} trials finished")
    log.info(
        f"{study_cfg['direction']} {study_cfg['metric']}; sampler {settings['sampler'].get('name')}, "
        f"pruner {settings['pruner'].get('name')}; search space: " + "; ".join(space.describe())
    )
    if done >= n_trials:
        log.info(
            f"study '{study.study_name}' already has {done} finished trials (n_trials={n_trials}); nothing to run"
        )
    else:
        requeued = requeue_interrupted(study)
        if requeued:
            log.info(f"re-running interrupted trial(s) {requeued} with the same parameters")
        stale = fail_stale_trials(study)
        if stale:
            log.info(
                f"trial(s) {stale} were left running by a worker that stopped (no heartbeat for over "
                f"{study_cfg.get('grace_period')} s): marked FAIL, re-running each once with the same parameters"
            )
        start_tensorflow(settings["training"].get("threads"))
        objective = Objective(
            space, dataset, settings["training"], metric=study_cfg["metric"], seed=int(settings["seed"])
        )
        observers = [Progress(n_trials, study_cfg["metric"]), *([tracker] if tracker else [])]
        try:
            run_trials(
                study,
                objective,
                n_trials=n_trials,
                timeout=study_cfg.get("timeout"),
                observers=observers,
                max_consecutive_failures=int(study_cfg.get("max_consecutive_failures") or 0),
            )
        except BaseException as err:
            if tracker is not None:  # the parent run ends too: KILLED on Ctrl-C, FAILED on an error
                tracker.finish(study, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
                log.info(tracker.ui_hint())
            raise

    summary = from_study(study)
    table = trials_table(summary)
    log.info(counts_line(t.state for t in summary.trials))
    log.info("top trials:\n" + format_table(table, int(study_cfg.get("top", 5))))
    try:
        best = study.best_trial
    except ValueError:
        log.warning("no trial completed: no best.yaml written")
        _finish_tracking(tracker, study)
        return study
    hp = space.suggest(FixedTrial(best.params))
    best_info = {
        "trial": best.number,
        "value": best.value,
        "metric": study_cfg["metric"],
        "direction": study_cfg["direction"],
        "study": study.study_name,
        # What the model was made for: `tuning train` refuses data with other columns or classes.
        "task": dataset.task,
        "target": dataset.target,
        "columns": list(dataset.columns),
        "class_names": dataset.class_names,
        **{k: v for k, v in best.user_attrs.items() if k != "traceback"},
    }
    path = write_yaml(
        study_dir / "best.yaml",
        best_config(settings, hp, task=dataset.task, best=best_info),
        header=f"# Best trial {best.number} of study '{study.study_name}': "
        f"{study_cfg['metric']}={best.value:.6g}. Reuse: tuning train study={study.study_name}\n",
    )
    log.info(f"best trial {best.number}: {study_cfg['metric']}={best.value:.6g}")
    for key, value in hp.as_config().items():
        log.info(f"  {key}: {value}")
    log.info(f"best config written to {path}")
    _finish_tracking(tracker, study)
    return study


def _finish_tracking(tracker: Any, study: Any) -> None:
    """End the sweep's MLflow parent run (artifacts attached) and say how to open the UI."""
    if tracker is not None:
        tracker.finish(study)
        log.info(tracker.ui_hint())


# What Ctrl-C cost, by where it landed (see _interrupted_in).
INTERRUPTED = {
    "trials": "the running trial is marked FAIL; run the same command to resume (its parameters run first)",
    "export": "every finished trial is stored, but best.yaml or the MLflow summary may be missing; "
    "run the same command to write them again (no trial is re-run)",
    "start": "no trial was running, so nothing was lost; run the same command to start or resume",
}


def _interrupted_in(err: BaseException) -> str:
    """``trials``, ``export`` or ``start``: where in ``run`` a KeyboardInterrupt was raised,
    read from its traceback (the trial loop and the export are functions of their own)."""
    names = set()
    tb = err.__traceback__
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if "run_trials" in names:
        return "trials"
    if names & {"write_yaml", "_finish_tracking", "finish"}:
        return "export"
    return "start"


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _app(cfg: DictConfig) -> None:
    redact_hydra_files()
    quiet_terminal(bool(cfg.get("verbose", False)))
    try:
        run(resolved(cfg))
    except ConfigError as err:
        fail(err)
    except KeyboardInterrupt as err:
        print(f"\ninterrupted: {INTERRUPTED[_interrupted_in(err)]}", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # reported, not hidden: one redacted line, the traceback in sweep.log
        crash(err, "tuning sweep")


def main(args: Sequence[str]) -> int:
    """``tuning sweep [overrides...]``: pre-validate (nothing written on bad input), then run Hydra."""
    if not HYDRA_PASSTHROUGH.intersection(a.split("=")[0] for a in args):
        try:
            settings = resolved(compose("config", [a for a in args if not a.startswith("-")]))
            # An unreachable database or tracking server: one line, nothing written.
            check(settings, reach_server=True)
            check_tracking(settings)
            paths = settings["paths"]
            under_root = Path(paths["study_dir"]).is_relative_to(paths["root"])
            check_writable_folder(paths["study_dir"], "paths.root" if under_root else "paths.study_dir")
        except ConfigError as err:
            fail(err)
        except KeyboardInterrupt:
            print(f"\ninterrupted while checking the config: {INTERRUPTED['start']}", file=sys.stderr)
            sys.exit(130)
    try:
        return run_hydra_app(_app, "tuning sweep", args)
    except KeyboardInterrupt:  # in Hydra's own start-up (run folder, logging), before _app runs
        print(f"\ninterrupted: {INTERRUPTED['start']}", file=sys.stderr)
        sys.exit(130)
