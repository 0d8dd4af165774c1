"""`tuning sweep`: validate, load the data, run the study, print the best trials, export best.yaml."""

from __future__ import annotations

import logging
import os
import signal
import sys
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
from tuning.commands.workers import check_workers
from tuning.config import (
    compose,
    conf_dir,
    for_task,
    resolved,
    storage_url,
    validate,
    validate_for_task,
)
from tuning.config.space import SearchSpace
from tuning.config.storage import check_storage
from tuning.config.tasks import TASKS
from tuning.errors import ConfigError, StudyStopped, Terminated
from tuning.files import check_writable_folder
from tuning.logs import quiet_terminal
from tuning.model.backend import start_tensorflow
from tuning.search.engines.base import Engine
from tuning.study.summary import StudySummary
from tuning.tracking.client import check_tracking, connect_tracking

log = logging.getLogger("tuning")


def check(settings: Mapping[str, Any], *, reach_server: bool = False) -> tuple[SearchSpace, Engine]:
    """Every check that needs no data: config values, the engine's options (sampler, pruner...),
    the storage URL (with ``reach_server``, that its database answers), and the losses and
    metric against the task when ``data.task`` is set. Returns the space and the engine."""
    space = validate(settings)  # before importing an engine: most mistakes are caught here, fast
    from tuning.search.engines import make_engine

    url = storage_url(settings["study"], settings["paths"]["study_dir"])
    engine = make_engine(settings, url)
    check_storage(url, reach_server=reach_server)
    task = settings["data"].get("task")
    if task in TASKS:
        space = validate_for_task(settings, space, task)
    if reach_server:
        check_identity(settings)
        from tuning.study.identity import study_identity

        engine.check_resume(study_identity(settings))
    return space, engine


def check_identity(settings: Mapping[str, Any]) -> None:
    """Refuse a resume that changes what the study's trials are, before Hydra writes anything.

    Reads the default SQLite file directly (no Optuna, no TensorFlow; nothing created). Other
    storages are checked when the study is opened, still before any trial or TensorFlow.

    Raises:
        StudyMismatch: one line per difference, and the way out.
    """
    from tuning.config.storage import local_path
    from tuning.results.optuna_sqlite import read_study
    from tuning.study.identity import IDENTITY_ATTR, check_resume, study_identity

    url = storage_url(settings["study"], settings["paths"]["study_dir"])
    path = local_path(url)
    if path is None or not url.startswith("sqlite") or not path.is_file():
        return
    name = str(settings["study"]["name"])
    summary = read_study(path, name)
    if summary is not None:
        check_resume(name, summary.user_attrs.get(IDENTITY_ATTR), study_identity(settings))


def run(settings: Mapping[str, Any]) -> StudySummary:
    """Run (or resume) the sweep described by a resolved config; returns the study's records.

    Raises ``StudyMismatch`` (a resume that changes the study's identity) before any trial,
    ``TooManyFailures`` after best.yaml is written, KeyboardInterrupt / ``Terminated`` on
    Ctrl-C / SIGTERM, and any other error (a bug or a lost store) as it is.
    """
    from tuning.data import load_dataset
    from tuning.search.engines import make_engine
    from tuning.study.identity import stored_config, study_identity
    from tuning.study.selection import study_attrs

    space, _ = check(settings)
    tracking = connect_tracking(settings)  # before the data: an unreachable MLflow store stops here
    dataset = load_dataset(settings["data"], settings["split"], int(settings["seed"]))
    space = validate_for_task(settings, space, dataset.task)
    if space.builder is not None:  # one build with the defaults: a broken builder stops before any study
        start_tensorflow(settings["training"])  # before Keras: quietly, with its threads
        from tuning.search.trial import probe_builder

        probe_builder(space.builder, dataset, int(settings["training"].get("steps_per_execution", 1)))
    folds = (settings.get("cv") or {}).get("folds")
    if folds:  # more folds than the smallest class has rows: one line, before anything is written
        from tuning.data.folds import check_fold_count

        check_fold_count(dataset, int(folds))
    # The identity keeps what the command asked (`study.metric: auto`), so the next command that
    # asks the same matches it before any data is read; what `auto` means for this task is
    # stored beside it (the study's `metric`, the trials' `metric`, best.yaml).
    identity = study_identity(settings)
    settings = for_task(settings, dataset.task)
    url = storage_url(settings["study"], settings["paths"]["study_dir"])
    engine = make_engine(settings, url)  # again: `auto` metric and direction are now this task's
    for note in engine.open(
        space,
        user_attrs={
            "metric": settings["study"]["metric"],
            "task": dataset.task,
            "data": dataset.name,
            "class_names": dataset.class_names,
            "engine": engine.name,
            **study_attrs(settings),
        },
        identity=identity,
        config=stored_config(settings),
    ):
        log.info(note)
    tracker = None
    if tracking is not None:  # mlflow is imported only when tracking is on
        from tuning.tracking.sweep import start_sweep_tracking

        tracker = start_sweep_tracking(tracking, settings, engine.summary(), url)
    try:
        stopped = _search(engine, space, dataset, settings, tracker, url)
    except BaseException as err:
        # The parent run ends too: KILLED on Ctrl-C/SIGTERM, FAILED on an error; wherever it lands
        # (back-fill, trials, export), the next run finishes what is missing.
        if tracker is not None:
            tracker.finish(engine.summary(), "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            log.info(tracker.ui_hint())
        raise
    summary = engine.summary()
    _finish_tracking(tracker, engine, summary, "FAILED" if stopped else "FINISHED")
    if stopped is not None:
        raise stopped
    done = summary.finished_count()
    n_trials = int(settings["study"]["n_trials"])
    if done < n_trials:
        timeout = settings["study"].get("timeout")
        budget = f" within study.timeout={timeout} s" if timeout else ""
        log.warning(
            f"study '{summary.name}' has {done} of study.n_trials={n_trials} finished trials{budget}; "
            "run the same command to add the rest"
        )
    return summary


def run_trials(engine: Engine, runner: Any, settings: Mapping[str, Any], observers: list[Any]) -> None:
    """The trial loop (a function of its own: a Ctrl-C inside it is told apart by its name)."""
    from tuning.search.loop import Budget, run_search

    study_cfg = settings["study"]
    budget = Budget(
        n_trials=int(study_cfg["n_trials"]),
        timeout=study_cfg.get("timeout"),
        max_consecutive_failures=int(study_cfg.get("max_consecutive_failures") or 0),
    )
    run_search(engine, runner, budget, observers)


def _search(
    engine: Engine, space: SearchSpace, dataset: Any, settings: Mapping[str, Any], tracker: Any, url: str
) -> StudyStopped | None:
    """Back-fill MLflow, run the trials still needed, print the table, export best.yaml.
    Returns the reason the study stopped itself, if it did (best.yaml is written all the same)."""
    from tuning.final.best import export_best
    from tuning.results.table import failure_lines, format_table, trials_table
    from tuning.search.progress import Progress
    from tuning.search.runner import TrialRunner
    from tuning.study.selection import pick_reason
    from tuning.study.summary import counts_line

    study_cfg = dict(settings["study"])
    n_trials = int(study_cfg["n_trials"])
    summary = engine.summary()
    if tracker is not None:
        tracker.backfill(summary, space)  # trials that ended after the last run stopped logging
    done = summary.finished_count()
    log.info(dataset.summary())
    log.info(f"study '{summary.name}' in {engine.location()}: {done}/{n_trials} trials finished")
    log.info(
        f"{summary.direction} {study_cfg['metric']}; {engine.describe()}; search space: "
        + "; ".join(space.describe())
    )
    stopped: StudyStopped | None = None
    if done >= n_trials:
        log.info(
            f"study '{summary.name}' already has {done} finished trials (n_trials={n_trials}); nothing to run"
        )
    else:
        start_tensorflow(settings["training"])
        runner = TrialRunner(
            dataset,
            settings["training"],
            metric=study_cfg["metric"],
            direction=summary.direction,
            seed=int(settings["seed"]),
            folds=(settings.get("cv") or {}).get("folds"),
        )
        observers = [Progress(n_trials, study_cfg["metric"]), *([tracker] if tracker else [])]
        try:
            run_trials(engine, runner, settings, observers)
        except StudyStopped as err:  # the trials that completed still give a best.yaml
            stopped = err

    summary = engine.summary()
    table = trials_table(summary)
    log.info(counts_line(t.state for t in summary.trials))
    log.info("top trials:\n" + format_table(table, int(study_cfg.get("top", 5))))
    failures = failure_lines(summary)
    if failures:
        log.info("failed trials:\n" + "\n".join(failures))
    best = summary.best()
    if best is None:
        log.warning("no trial completed: no best.yaml written")
        return stopped
    log.info(f"picked trial {best.number}: {pick_reason(summary)}")
    export_best(summary, best, space, dataset, settings, Path(settings["paths"]["study_dir"]))
    return stopped


def _finish_tracking(tracker: Any, engine: Engine, summary: StudySummary, status: str = "FINISHED") -> None:
    """End the sweep's MLflow parent run (artifacts attached) and say how to open the UI."""
    if tracker is not None:
        tracker.finish(summary, status, plots=engine.write_plots)
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

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    from tuning.search.runner import on_main_thread

    previous = signal.signal(signal.SIGTERM, terminate) if on_main_thread() else None
    try:
        summary = run(settings)
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
    done = summary.finished_count()
    if done < n_trials and not settings["study"].get("timeout"):
        print(
            f"error: study.n_trials: {done} of {n_trials} trials finished (the others failed: see "
            "`tuning report`); run the same command to add the rest",
            file=sys.stderr,
        )
        return EXIT_SHORT
    return EXIT_OK


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
    from tuning.search.workers import run_suffix

    # A Kubernetes indexed Job or a SLURM array worker: its own run folder (conf: hydra.run.dir).
    suffix = run_suffix()
    if suffix and "TUNING_RUN_SUFFIX" not in os.environ:
        os.environ["TUNING_RUN_SUFFIX"] = suffix
    if not HYDRA_PASSTHROUGH.intersection(a.split("=")[0] for a in args):
        try:
            settings = resolved(compose("config", [a for a in args if not a.startswith("-")]))
            # An unreachable database or tracking server: one line, nothing written.
            check(settings, reach_server=True)
            check_tracking(settings)
            check_workers(settings)
            paths = settings["paths"]
            under_root = Path(paths["study_dir"]).is_relative_to(paths["root"])
            check_writable_folder(paths["study_dir"], "paths.root" if under_root else "paths.study_dir")
        except ConfigError as err:
            fail(err)
        except KeyboardInterrupt:
            print(f"\ninterrupted while checking the config: {INTERRUPTED['start']}", file=sys.stderr)
            sys.exit(130)
        if int(settings.get("workers") or 1) > 1:  # checked once here; each worker is this command
            from tuning.commands.workers import launch

            return launch(args, settings)
    try:
        return run_hydra_app(_app, "tuning sweep", args)
    except KeyboardInterrupt:  # in Hydra's own start-up (run folder, logging), before _app runs
        print(f"\ninterrupted: {INTERRUPTED['start']}", file=sys.stderr)
        sys.exit(130)
