"""`tuning sweep`: parse the command line, run the sweep service, say how it ended (exit code).

The sweep itself, phase by phase, is ``tuning.service.sweep``; ``check`` and ``run`` are
importable from here too, as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from tuning import interrupts
from tuning.commands.support import (
    crash,
    fail,
    hydra_flags,
    report_crash,
    run_hydra,
    run_job,
    without_hydra,
)
from tuning.commands.workers import check_workers
from tuning.config import compose, conf_dir, resolved
from tuning.errors import ConfigError, StudyStopped, Terminated
from tuning.files import check_writable_folder
from tuning.payload import RawConfig
from tuning.service.sweep import INTERRUPTED, Interrupted, check, run, run_sweep
from tuning.tracking.client import check_tracking

__all__ = ["check", "execute", "main", "run"]


# Exit codes of `tuning sweep` (README, "Exit codes").
EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_SHORT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


def execute(raw: RawConfig) -> int:
    """Run the sweep as a command; returns its exit code, with one line for each way it can end.

    0: n_trials finished (or study.timeout given, or stop=converged ended it); 2: the study
    stopped itself (too many failed trials in a row); 3: fewer than n_trials finished; 130 / 143:
    Ctrl-C / SIGTERM; 1: an unexpected error (a bug or a lost store), its traceback in the run's log. ConfigError
    (bad input, a refused resume) propagates to the caller's one-line exit 2.
    """

    try:
        with interrupts.handled():  # SIGTERM -> Terminated; both held while a write is shielded
            outcome = run_sweep(raw)  # the service decides how it ended; here, its line and code
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
        where = err.stage if isinstance(err, Interrupted) else "start"
        print(f"\ninterrupted: {INTERRUPTED[where]}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError:
        raise
    except Exception as err:  # not hidden: one redacted line here, the whole traceback in the run's log
        report_crash(err, "tuning sweep")
        return EXIT_ERROR
    if outcome.short:
        done, n_trials = outcome.summary.finished_count(), outcome.settings.study.n_trials
        print(
            f"error: study.n_trials: {done} of {n_trials} trials finished (the others failed: see "
            "`tuning report`); run the same command to add the rest",
            file=sys.stderr,
        )
        return EXIT_SHORT
    return EXIT_OK


def _job(cfg: DictConfig) -> None:
    """The sweep as a job: its exit code, one line for bad input or a crash."""
    try:
        code = execute(resolved(cfg))
    except ConfigError as err:
        fail(err)
    except Exception as err:  # outside the sweep itself (e.g. resolving the config): reported, not hidden
        crash(err, "tuning sweep")
    if code:
        sys.exit(code)


def main(args: Sequence[str]) -> int:
    """``tuning sweep [overrides...]``: compose once, check (nothing written on bad input), run.

    With a flag of Hydra's (``--cfg job``, ``-m``...), Hydra's own command line runs instead and
    each job checks its config as it starts."""
    from tuning.search.workers import run_suffix

    # A Kubernetes indexed Job or a SLURM array worker: its own run folder (conf: hydra.run.dir).
    suffix = run_suffix()
    if suffix and "TUNING_RUN_SUFFIX" not in os.environ:
        os.environ["TUNING_RUN_SUFFIX"] = suffix
    if hydra_flags(args):
        try:
            run_hydra(_job, conf_dir(), "config", args)
        except KeyboardInterrupt:  # in Hydra's own start-up (run folder, logging), before _job runs
            print(f"\ninterrupted: {INTERRUPTED['start']}", file=sys.stderr)
            sys.exit(130)
        return 0
    try:
        cfg = compose("config", args, with_hydra=True)
        raw = resolved(without_hydra(cfg))  # parsed once, by check: `checked` is the typed settings
        # An unreachable database or tracking server: one line, nothing written.
        checked, _ = check(raw, reach_server=True)
        check_tracking(checked.tracking, checked.paths_root)
        check_workers(checked.workers, checked.engine)
        under_root = Path(checked.study_dir).is_relative_to(checked.paths_root)
        check_writable_folder(checked.study_dir, "paths.root" if under_root else "paths.study_dir")
    except ConfigError as err:
        fail(err)
    except KeyboardInterrupt:
        print(f"\ninterrupted while checking the config: {INTERRUPTED['start']}", file=sys.stderr)
        sys.exit(130)
    if checked.workers > 1:  # checked once here; each worker is this command
        from tuning.commands.workers import launch

        return launch(args, checked)
    try:
        run_job(cfg, _job)
    except KeyboardInterrupt:  # while the run folder and its log are set up, before _job runs
        print(f"\ninterrupted: {INTERRUPTED['start']}", file=sys.stderr)
        sys.exit(130)
    return 0
