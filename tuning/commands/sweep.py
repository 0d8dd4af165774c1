"""`tuning sweep`: validate, load the data, run the study, print the best trials, export best.yaml."""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tuning.commands.support import (
    HYDRA_PASSTHROUGH,
    crash,
    fail,
    redact_hydra_files,
    report_crash,
    run_hydra_app,
)
from tuning.config import (
    compose,
    conf_dir,
    for_task,
    resolved,
    storage_url,
    validate,
    validate_for_task,
)
from tuning.errors import ConfigError, StudyStopped, Terminated
from tuning.files import check_writable_folder
from tuning.logs import quiet_terminal
from tuning.model.backend import start_tensorflow
from tuning.model.tasks import TASKS
from tuning.search.space import SearchSpace
from tuning.search.storage import check_storage
from tuning.tracking.client import check_tracking, connect_tracking

log = logging.getLogger("tuning")


def check(settings: Mapping[str, Any], *, reach_server: bool = False) -> tuple[SearchSpace, Any, Any]:
    """Every check that needs no data: config values, sampler and pruner options, the storage
    URL (with ``reach_server``, that its database answers), and the losses and metric against
    the task when ``data.task`` is set. Returns the space, sampler and pruner."""
    space = validate(settings)  # before importing Optuna: most mistakes are caught here, fast
    from tuning.search.engines.optuna import make_pruner, make_sampler

    sampler = make_sampler(settings["sampler"])
    pruner = make_pruner(settings["pruner"])
    check_storage(storage_url(settings["study"], settings["paths"]["study_dir"]), reach_server=reach_server)
    task = settings["data"].get("task")
    if task in TASKS:
        space = validate_for_task(settings, space, task)
    if reach_server:
        check_identity(settings)
    return space, sampler, pruner


def check_identity(settings: Mapping[str, Any]) -> None:
    """Refuse a resume that changes what the study's trials are, before Hydra writes anything.

    Reads the default SQLite file directly (no Optuna, no TensorFlow; nothing created). Other
    storages are checked when the study is opened, still before any trial or TensorFlow.

    Raises:
        StudyMismatch: one line per difference, and the way out.
    """
    from tuning.results.optuna_sqlite import read_study
    from tuning.search.identity import IDENTITY_ATTR, check_resume, study_identity
    from tuning.search.storage import local_path

    url = storage_url(settings["study"], settings["paths"]["study_dir"])
    path = local_path(url)
    if path is None or not url.startswith("sqlite") or not path.is_file():
        return
    name = str(settings["study"]["name"])
    summary = read_study(path, name)
    if summary is not None:
        check_resume(name, summary.user_attrs.get(IDENTITY_ATTR), study_identity(settings))


def run(settings: Mapping[str, Any]) -> Any:
    """Run (or resume) the sweep described by a resolved config; returns the Optuna study.

    Raises ``StudyMismatch`` (a resume that changes the study's identity) before any trial,
    ``TooManyFailures`` after best.yaml is written, KeyboardInterrupt / ``Terminated`` on
    Ctrl-C / SIGTERM, and any other error (a bug or a lost store) as it is.
    """
    import optuna

    from tuning.data import load_dataset
    from tuning.search.engines.optuna import finished_count, open_study, reseed_on_resume
    from tuning.search.engines.optuna_stale import fail_stale_trials
    from tuning.search.identity import stored_config, study_identity

    # Our progress lines report every trial (failures with their reason, tracebacks are kept
    # in the trial's user attributes): Optuna's own per-trial logs would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    space, sampler, pruner = check(settings)
    tracking = connect_tracking(settings)  # before the data: an unreachable MLflow store stops here
    dataset = load_dataset(settings["data"], settings["split"], int(settings["seed"]))
    space = validate_for_task(settings, space, dataset.task)
    # The identity keeps what the command asked (`study.metric: auto`), so the next command that
    # asks the same matches it before any data is read; what `auto` means for this task is
    # stored beside it (the study's `metric`, the trials' `metric`, best.yaml).
    identity = study_identity(settings)
    settings = for_task(settings, dataset.task)

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
        identity=identity,
        config=stored_config(settings),
    )
    n_trials = int(study_cfg["n_trials"])
    # Every run, even one with nothing left to train: a worker killed mid-trial leaves it RUNNING.
    stale = fail_stale_trials(study)
    if stale:
        log.info(
            f"trial(s) {stale} were left running by a worker that stopped (its process is gone, or no "
            f"heartbeat for over {study_cfg.get('grace_period')} s): marked FAIL"
            + ("" if finished_count(study) >= n_trials else "; re-running each once with the same parameters")
        )
    reseeded = reseed_on_resume(study, settings["sampler"])
    if reseeded is not None:
        log.debug(f"resumed study: sampler seed {reseeded} (seed + trials in the study), not a replay")
    tracker = None
    if tracking is not None:  # mlflow is imported only when tracking is on
        from tuning.tracking.sweep import start_sweep_tracking

        tracker = start_sweep_tracking(tracking, settings, study, url)
    try:
        stopped = _search(study, space, dataset, settings, tracker, url)
    except BaseException as err:
        # The parent run ends too: KILLED on Ctrl-C/SIGTERM, FAILED on an error; wherever it lands
        # (back-fill, trials, export), the next run finishes what is missing.
        if tracker is not None:
            tracker.finish(study, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            log.info(tracker.ui_hint())
        raise
    _finish_tracking(tracker, study, "FAILED" if stopped else "FINISHED")
    if stopped is not None:
        raise stopped
    done = finished_count(study)
    if done < n_trials:
        timeout = study_cfg.get("timeout")
        budget = f" within study.timeout={timeout} s" if timeout else ""
        log.warning(
            f"study '{study.study_name}' has {done} of study.n_trials={n_trials} finished trials{budget}; "
            "run the same command to add the rest"
        )
    return study


def _search(
    study: Any, space: SearchSpace, dataset: Any, settings: Mapping[str, Any], tracker: Any, url: str
) -> StudyStopped | None:
    """Back-fill MLflow, run the trials still needed, print the table, export best.yaml.
    Returns the reason the study stopped itself, if it did (best.yaml is written all the same)."""
    from tuning.final.best import export_best
    from tuning.redaction import redact
    from tuning.results.summary import counts_line, from_study
    from tuning.results.table import failure_lines, format_table, trials_table
    from tuning.search.engines.optuna import Objective, finished_count, run_trials
    from tuning.search.engines.optuna_stale import requeue_interrupted
    from tuning.search.progress import Progress

    study_cfg = dict(settings["study"])
    n_trials = int(study_cfg["n_trials"])
    if tracker is not None:
        tracker.backfill(study, space)  # trials that ended after the last run stopped logging
    done = finished_count(study)
    log.info(dataset.summary())
    log.info(f"study '{study.study_name}' in {redact(url)}: {done}/{n_trials} trials finished")
    log.info(
        f"{study.direction.name.lower()} {study_cfg['metric']}; sampler {settings['sampler'].get('name')}, "
        f"pruner {settings['pruner'].get('name')}; search space: " + "; ".join(space.describe())
    )
    stopped: StudyStopped | None = None
    if done >= n_trials:
        log.info(
            f"study '{study.study_name}' already has {done} finished trials (n_trials={n_trials}); nothing to run"
        )
    else:
        requeued = requeue_interrupted(study)
        if requeued:
            log.info(f"re-running interrupted trial(s) {requeued} with the same parameters")
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
        except StudyStopped as err:  # the trials that completed still give a best.yaml
            stopped = err

    summary = from_study(study)
    table = trials_table(summary)
    log.info(counts_line(t.state for t in summary.trials))
    log.info("top trials:\n" + format_table(table, int(study_cfg.get("top", 5))))
    failures = failure_lines(summary)
    if failures:
        log.info("failed trials:\n" + "\n".join(failures))
    try:
        best = study.best_trial
    except ValueError:
        log.warning("no trial completed: no best.yaml written")
        return stopped
    export_best(study, best, space, dataset, settings, Path(settings["paths"]["study_dir"]))
    return stopped


def _finish_tracking(tracker: Any, study: Any, status: str = "FINISHED") -> None:
    """End the sweep's MLflow parent run (artifacts attached) and say how to open the UI."""
    if tracker is not None:
        tracker.finish(study, status)
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
    if names & {"export_best", "write_yaml", "_finish_tracking", "finish"}:
        return "export"
    return "start"


# Exit codes of `tuning sweep` (README, "Exit codes").
EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_SHORT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


def execute(settings: Mapping[str, Any]) -> int:
    """Run the sweep as a command; returns its exit code, with one line for each way it can end.

    0: n_trials finished (or study.timeout given); 2: the study stopped itself (too many failed
    trials in a row); 3: fewer than n_trials finished; 130 / 143: Ctrl-C / SIGTERM; 1: an
    unexpected error (a bug or a lost store), its traceback in the run's log. ConfigError
    (bad input, a refused resume) propagates to the caller's one-line exit 2.
    """
    from tuning.search.engines.optuna import finished_count

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate) if _main_thread() else None
    try:
        study = run(settings)
    except StudyStopped as err:
        print(f"error: study.max_consecutive_failures: the sweep stopped: {err}", file=sys.stderr)
        return EXIT_INPUT
    except Terminated:
        print(
            "\nterminated (SIGTERM): the running trial is marked FAIL and re-run on resume; "
            "run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    except KeyboardInterrupt as err:
        print(f"\ninterrupted: {INTERRUPTED[_interrupted_in(err)]}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError:
        raise
    except Exception as err:  # not hidden: one redacted line here, the whole traceback in the run's log
        report_crash(err, "tuning sweep")
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    n_trials = int(settings["study"]["n_trials"])
    done = finished_count(study)
    if done < n_trials and not settings["study"].get("timeout"):
        print(
            f"error: study.n_trials: {done} of {n_trials} trials finished (the others failed: see "
            "`tuning report`); run the same command to add the rest",
            file=sys.stderr,
        )
        return EXIT_SHORT
    return EXIT_OK


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _app(cfg: DictConfig) -> None:
    redact_hydra_files()
    quiet_terminal(bool(cfg.get("verbose", False)))
    try:
        code = execute(resolved(cfg))
    except ConfigError as err:
        fail(err)
    except Exception as err:  # outside the sweep itself (e.g. resolving the config): reported, not hidden
        crash(err, "tuning sweep")
    if code:
        sys.exit(code)


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
