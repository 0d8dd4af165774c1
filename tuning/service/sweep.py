"""The sweep service: its phases in order, each a function (``run_sweep`` reads them top to bottom).

check (config, engine, storage, resume identity: nothing written) -> open (data, the engine's
study, the MLflow parent run) -> search (back-fill, the trials until the budget is spent) ->
summarise (the table, the failures, the pick) -> export (best.yaml) -> finish (the MLflow parent
run). ``run_sweep`` also says how the sweep ended (``SweepOutcome``: n_trials reached, converged,
budget spent, timeout, or short), decided here once; the command line (``tuning.commands.sweep``)
turns that into one line and an exit code. Notebooks, benchmarks and tests call ``run`` (the
study's records only).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from tuning import interrupts
from tuning.config import Settings, parse, with_task
from tuning.config.schema import StopConfig, StudyConfig
from tuning.config.storage import check_storage
from tuning.errors import ConfigError, StudyStopped, Terminated
from tuning.interrupts import shielded
from tuning.model.backend import start_tensorflow
from tuning.payload import Payload, RawConfig
from tuning.search.engines.base import Engine, StudyRecord
from tuning.search.rehearsal import REHEARSAL_LINE, check_rehearsal
from tuning.study.summary import StudySummary
from tuning.tracking.client import connect_tracking

log = logging.getLogger("tuning")


def check(raw: RawConfig, *, reach_server: bool = False) -> tuple[Settings, Engine]:
    """Every check that needs no data: config values, the engine's options (sampler, pruner...),
    the storage URL (with ``reach_server``, that its database answers), and the losses and
    metric against the task when ``data.task`` is set. Returns the settings and the engine."""
    settings = parse(raw)  # before importing an engine: most mistakes are caught here, fast
    check_rehearsal(settings.training, settings.space.builder, settings.folds)
    from tuning.search.engines import make_engine

    engine = make_engine(settings, settings.storage_url)
    if settings.stop.converged and not engine.supports_converged_stop:
        raise ConfigError(
            "stop",
            f"converged asks Optuna's terminator about an Optuna study; engine={engine.name} keeps "
            "none: use stop=none, or engine=optuna",
        )
    _check_engine_can(settings, engine)
    check_storage(settings.storage_url, reach_server=reach_server)
    if settings.task is not None:
        settings = with_task(settings, settings.task)
    if reach_server:
        from tuning.study.identity import study_identity

        identity = study_identity(raw)  # what the command asked (`auto` kept), as the study stores it
        check_identity(settings, identity)
        engine.check_resume(identity)
        if settings.warm_start.source is not None:
            engine.check_warm_start(settings.warm_start, identity)
    return settings, engine


def _check_engine_can(settings: Settings, engine: Engine) -> None:
    """Refuse a budget or a warm start the engine cannot keep (one line, exit 2)."""
    if settings.budget.limited and not engine.supports_budget:
        key = "budget.epochs" if settings.budget.epochs is not None else "budget.minutes"
        raise ConfigError(
            key,
            f"engine={engine.name} cannot count a budget across its trials; use engine=optuna, or study.n_trials",
        )
    if settings.warm_start.source is not None and not engine.supports_warm_start:
        raise ConfigError(
            "warm_start.from",
            f"engine={engine.name} cannot be seeded from an earlier study; use engine=optuna, or warm_start.from=null",
        )


def check_identity(settings: Settings, identity: Payload) -> None:
    """Refuse a resume that changes what the study's trials are, before Hydra writes anything.

    Reads the default SQLite file directly (no Optuna, no TensorFlow; nothing created). Other
    storages are checked when the study is opened, still before any trial or TensorFlow.

    Raises:
        StudyMismatch: one line per difference, and the way out.
    """
    from tuning.config.storage import local_path
    from tuning.results.optuna_sqlite import read_study
    from tuning.study.identity import IDENTITY_ATTR, check_resume

    url = settings.storage_url
    path = local_path(url)
    if path is None or not url.startswith("sqlite") or not path.is_file():
        return
    summary = read_study(path, settings.study.name)
    if summary is not None:
        check_resume(settings.study.name, summary.user_attrs.get(IDENTITY_ATTR), identity)


# How a sweep that returned ended (``SweepOutcome.ended``): its trials reached study.n_trials
# (or none was set), stop=converged ended it, the budget was spent, study.timeout ran out, or
# fewer than study.n_trials finished for none of those reasons (trials failed: exit 3).
Ending = Literal["n_trials", "converged", "budget", "timeout", "short"]
ENDINGS: tuple[Ending, ...] = get_args(Ending)


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep that returned hands its caller: the study's records, the settings it ran
    with (``auto`` resolved for the data's task), and how it ended (one of ``ENDINGS``)."""

    summary: StudySummary
    settings: Settings
    ended: Ending

    @property
    def short(self) -> bool:
        """Fewer than ``study.n_trials`` finished, and no timeout, budget or convergence says why."""
        return self.ended == "short"


def ending(summary: StudySummary, settings: Settings) -> Ending:
    """How the sweep that left ``summary`` ended (one of ``ENDINGS``), decided here only."""
    if converged_line(summary, settings.stop) is not None:
        return "converged"
    if budget_line(settings, summary) is not None:
        return "budget"
    n_trials = settings.study.n_trials
    if n_trials is None or summary.finished_count() >= n_trials:
        return "n_trials"
    return "timeout" if settings.study.timeout else "short"


def run(raw: RawConfig) -> StudySummary:
    """Run (or resume) the sweep described by a resolved config; returns the study's records
    (``run_sweep`` says how it ended too)."""
    return run_sweep(raw).summary


def run_sweep(raw: RawConfig) -> SweepOutcome:
    """Run (or resume) the sweep described by a resolved config; returns the study's records,
    the settings and how the sweep ended.

    Raises ``StudyMismatch`` (a resume that changes the study's identity) before any trial,
    ``TooManyFailures`` after best.yaml is written, KeyboardInterrupt / ``Terminated`` on
    Ctrl-C / SIGTERM, and any other error (a bug or a lost store) as it is.
    """
    from tuning.data import load_dataset
    from tuning.study.identity import study_identity

    settings, _ = check(raw)
    if settings.training.simulate_epoch_seconds is not None:  # said first: nothing here is trained
        log.warning(REHEARSAL_LINE.format(seconds=settings.training.simulate_epoch_seconds))
    # The identity keeps what the command asked (`study.metric: auto`), so the next command that
    # asks the same matches it before any data is read; what `auto` means for this task is
    # stored beside it (the study's `metric`, the trials' `metric`, best.yaml).
    identity = study_identity(raw)
    # Before the data: an unreachable MLflow store stops here.
    tracking = connect_tracking(settings.tracking, settings.paths_root)
    dataset = load_dataset(settings.data, settings.split, settings.seed)
    settings = with_task(settings, dataset.task)
    _probe(settings, dataset)
    engine = _open(settings, dataset, identity)
    tracker = _start_tracking(tracking, settings, engine)
    try:
        stopped = _search(engine, dataset, settings, tracker)
        summary = engine.summary()
        _summarise(summary, settings)
        _export(summary, dataset, settings)
    except BaseException as err:
        # The parent run ends too: KILLED on Ctrl-C/SIGTERM, FAILED on an error; wherever it lands
        # (back-fill, trials, export), the next run finishes what is missing.
        if tracker is not None:
            with stage("export"), shielded():
                tracker.finish(engine.summary(), "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            log.info(tracker.ui_hint())
        raise
    converged = converged_line(summary, settings.stop)
    if converged is not None and tracker is not None:
        with shielded():
            tracker.stopped(converged)
    _finish_tracking(tracker, engine, summary, "FAILED" if stopped else "FINISHED")
    if stopped is not None:
        raise stopped
    if converged is None:
        _warn_short(summary, settings.study)
    return SweepOutcome(summary, settings, ending(summary, settings))


def _start_tracking(tracking: Any, settings: Settings, engine: Engine) -> Any:
    """The sweep's MLflow parent run (None with tracking off: MLflow is then never imported)."""
    if tracking is None:
        return None
    from tuning.tracking.sweep import start_sweep_tracking

    with shielded():
        return start_sweep_tracking(tracking, settings, engine.summary(), settings.storage_url)


def converged_line(summary: StudySummary, stop: StopConfig) -> str | None:
    """With ``stop=converged``: its line when the study's last trials ended in that stop."""
    from tuning.search.loop import stopped_converged

    return stopped_converged(summary) if stop.converged else None


def _probe(settings: Settings, dataset: Any) -> None:
    """Checks that need the data, before anything is written: one build of a custom model with
    its defaults (a broken builder stops before any study), and the folds against the classes."""
    if settings.space.builder is not None:
        start_tensorflow(settings.training)  # before Keras: quietly, with its threads
        from tuning.search.trial import probe_builder

        probe_builder(settings.space.builder, dataset, settings.training.steps_per_execution)
    if settings.folds:  # more folds than the smallest class has rows: one line
        from tuning.data.folds import check_fold_count

        check_fold_count(dataset, settings.folds)


def _open(settings: Settings, dataset: Any, identity: Payload) -> Engine:
    """The engine, with ``auto`` metric and direction now this task's, its study created or resumed."""
    from tuning.search.engines import make_engine
    from tuning.study.identity import stored_config
    from tuning.study.selection import study_attrs

    engine = make_engine(settings, settings.storage_url)
    user_attrs = {
        "metric": settings.study.metric,
        "task": dataset.task,
        "data": dataset.name,
        "class_names": dataset.class_names,
        "engine": engine.name,
        **study_attrs(settings.selection, settings.folds),
    }
    with shielded():  # the study's first writes
        notes = engine.open(settings.space, StudyRecord(user_attrs, identity, stored_config(settings.raw)))
    for note in notes:
        log.info(note)
    return engine


def _warn_short(summary: StudySummary, study: StudyConfig) -> None:
    done = summary.finished_count()
    if study.n_trials is not None and done < study.n_trials:
        budget = f" within study.timeout={study.timeout:g} s" if study.timeout else ""
        log.warning(
            f"study '{summary.name}' has {done} of study.n_trials={study.n_trials} finished trials{budget}; "
            "run the same command to add the rest"
        )


def budget_of(settings: Settings) -> Any:
    """The search loop's ``Budget``: the study's limits and the ``stop`` rule."""
    from tuning.search.loop import Budget

    study = settings.study
    return Budget(
        n_trials=study.n_trials,
        timeout=study.timeout,
        max_consecutive_failures=study.max_consecutive_failures,
        stop=settings.stop,
        spend=settings.budget,
    )


def run_trials(engine: Engine, runner: Any, budget: Any, observers: list[Any]) -> None:
    """The trial loop, until the study's budget is spent; a Ctrl-C inside lands in stage ``trials``."""
    from tuning.search.loop import run_search

    with stage("trials"):
        run_search(engine, runner, budget, observers)


def _search(engine: Engine, dataset: Any, settings: Settings, tracker: Any) -> StudyStopped | None:
    """Back-fill MLflow, then run the trials still needed. Returns the reason the study stopped
    itself, if it did (the table and best.yaml follow all the same)."""
    from tuning.search.progress import Progress
    from tuning.search.runner import TrialRunner

    study, space = settings.study, settings.space
    summary = engine.summary()
    if tracker is not None:
        with shielded():
            tracker.backfill(summary, space)  # trials that ended after the last run stopped logging
    done = summary.finished_count()
    log.info(dataset.summary(settings.folds))
    of = "" if study.n_trials is None else f"/{study.n_trials}"  # None: a budget ends the study
    log.info(f"study '{summary.name}' in {engine.location()}: {done}{of} trials finished")
    log.info(
        f"{summary.direction} {study.metric}; {engine.describe()}; search space: "
        + "; ".join(space.describe())
    )
    stopped: StudyStopped | None = None
    budget = budget_of(settings)
    if study.n_trials is not None and done >= study.n_trials:
        log.info(
            f"study '{summary.name}' already has {done} finished trials (n_trials={study.n_trials}); nothing to run"
        )
    elif (spent := budget_line(settings, summary)) is not None:
        log.info(f"{spent}; nothing to run (raise the budget to search on)")
    elif (converged := _converged_before(engine, budget, summary)) is not None:
        log.info(
            f"{converged}; nothing to run: the study had converged already (raise stop.patience or "
            "stop.min_trials, or run stop=none, to search on)"
        )
    else:
        if settings.training.simulate_epoch_seconds is None:  # a rehearsal imports no TensorFlow
            start_tensorflow(settings.training)
            # A Ctrl-C whose raise TensorFlow's import swallowed (a gc callback) stops here, where
            # nothing runs yet, not at the trial loop's first check (stage "trials").
            interrupts.check()
        runner = TrialRunner(
            dataset,
            settings.training,
            metric=study.metric,
            direction=summary.direction,
            seed=settings.seed,
            folds=settings.folds,
            checkpoints=Path(settings.study_dir, "checkpoints") if settings.training.checkpoints else None,
        )
        observers = [Progress(study.n_trials, study.metric), *([tracker] if tracker else [])]
        try:
            run_trials(engine, runner, budget, observers)
        except StudyStopped as err:  # the trials that completed still give a best.yaml
            stopped = err
        if (spent := budget_line(settings, engine.summary())) is not None:
            log.info(spent)
    return stopped


def budget_line(settings: Settings, summary: StudySummary) -> str | None:
    """With ``budget.*``: how the study spent it, once it is spent (else None). Spent means
    ``tuning.search.budget.exhausted``, the test the search loop asks before each trial too."""
    from tuning.search.budget import spent_line

    return spent_line(settings.budget, summary) if settings.budget.limited else None


def _converged_before(engine: Engine, budget: Any, summary: StudySummary) -> str | None:
    """A resumed study that stop=converged still judges converged: its line (nothing runs).
    One that stopped so and is resumed with stop=none says it searches on."""
    from tuning.search.loop import check_converged, stopped_converged

    if not budget.stop.converged:
        earlier = stopped_converged(summary)
        if earlier is not None:
            log.info(
                f"study '{summary.name}' had stopped: {earlier}; stop=none searches on to study.n_trials"
            )
        return None
    return check_converged(engine, budget)


def _summarise(summary: StudySummary, settings: Settings) -> None:
    """The counts, the top trials, the failures, the pick and its reason."""
    from tuning.results.table import failure_lines, format_table, trials_table
    from tuning.study.selection import pick_reason
    from tuning.study.summary import counts_line

    log.info(counts_line(t.state for t in summary.trials))
    log.info("top trials:\n" + format_table(trials_table(summary), settings.study.top))
    failures = failure_lines(summary)
    if failures:
        log.info("failed trials:\n" + "\n".join(failures))
    best = summary.best()
    if best is None:
        log.warning("no trial completed: no best.yaml written")
        return
    log.info(f"picked trial {best.number}: {pick_reason(summary)}")


def _export(summary: StudySummary, dataset: Any, settings: Settings) -> None:
    """best.yaml for the picked trial (nothing when no trial completed)."""
    from tuning.final.best import export_best

    best = summary.best()
    if best is None:
        return
    with stage("export"), shielded():
        export_best(
            summary, best, settings.space, dataset, settings=settings, study_dir=Path(settings.study_dir)
        )


def _finish_tracking(tracker: Any, engine: Engine, summary: StudySummary, status: str = "FINISHED") -> None:
    """End the sweep's MLflow parent run (artifacts attached) and say how to open the UI."""
    if tracker is not None:
        with stage("export"):
            try:
                with shielded():  # a signal meanwhile is raised once the run is closed
                    tracker.finish(summary, status, plots=engine.write_plots)
            except KeyboardInterrupt:
                tracker.killed(summary)
                raise
        log.info(tracker.ui_hint())


# What Ctrl-C cost, by the stage it landed in (see stage).
INTERRUPTED = {
    "trials": "the running trial is marked FAIL; run the same command to resume (its parameters run first)",
    "export": "every finished trial is stored, but best.yaml or the MLflow summary may be missing; "
    "run the same command to write them again (no trial is re-run)",
    "start": "no trial was running, so nothing was lost; run the same command to start or resume",
}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the stage of the sweep it landed in (a key of INTERRUPTED)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the stage a Ctrl-C inside lands in; the innermost stage wins."""
    try:
        yield
    except (Interrupted, Terminated):  # SIGTERM keeps its own type: exit 143, its own line
        raise
    except KeyboardInterrupt as err:
        if isinstance(err.__context__, Interrupted):  # pressed again while the first one was handled:
            raise err.__context__ from None  # the first one's stage says what was lost
        raise Interrupted(name) from err
