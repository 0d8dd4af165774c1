"""Helpers shared by the command entry points: one-line errors, handing argv to a Hydra app."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tuning.errors import ConfigError

# Hydra flags after which we do not pre-compose: Hydra handles them (help, print config,
# multirun, extra config dirs) and validation then runs inside the job.
HYDRA_PASSTHROUGH = frozenset(
    {
        "--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
        "--multirun", "-m", "--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn",
        "--package", "-p", "--resolve", "--version", "--run", "-r", "--experimental-rerun",
    }
)  # fmt: skip


def fail(err: ConfigError) -> NoReturn:
    """Print ``error: key: message`` on one line and exit 2."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def crash(err: BaseException, command: str) -> NoReturn:
    """:func:`report_crash`, then exit 1."""
    report_crash(err, command)
    sys.exit(1)


def report_crash(err: BaseException, command: str) -> None:
    """Report an error nobody caught on purpose, without the credentials Hydra would print.

    Left to Hydra, an uncaught exception is printed with the job's command-line overrides
    (``Error executing job with overrides: [... 'study.storage=postgresql://user:password@...']``).
    Instead: the full traceback, credentials redacted, goes to the run's log file (Hydra's file
    handler, e.g. ``runs/<time>/sweep.log``), and stderr gets one redacted line naming it. The
    command then exits 1: a failure, not bad input.
    """
    from tuning.redaction import first_line, redact

    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    text = "".join(redact(line) or "" for line in text.splitlines(keepends=True))
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    record = logging.LogRecord("tuning", logging.ERROR, __file__, 0, "%s", (text.rstrip(),), None)
    for handler in files:
        handler.handle(record)
    where = f"; the traceback is in {files[0].baseFilename}" if files else ""
    if not files:  # no log file (Hydra's logging turned off): the traceback goes to stderr instead
        sys.stderr.write(text)
    root, seen = err, {id(err)}
    while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
        root = inner
        seen.add(id(inner))
    # Wrappers often say less than what they wrap (Optuna's StorageInternalError over a lost
    # connection): name the first cause too.
    cause = f" (cause: {type(root).__name__}: {first_line(root)})" if root is not err else ""
    print(
        f"error: {command} stopped by an unexpected {type(err).__name__}: {first_line(err)}{cause}{where}",
        file=sys.stderr,
    )


def run_hydra_app(app: Callable[[], None], prog: str, args: Sequence[str]) -> int:
    """Run a ``@hydra.main`` function with ``args`` as its command line.

    ``sys.argv`` and the process's logging are as they were afterwards, however the app ends
    (:func:`tuning.logs.host_logging_kept`): called in-process, a command leaves its host's
    handlers and streams alone.
    """
    from tuning.logs import host_logging_kept

    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        with host_logging_kept():
            app()
    finally:
        sys.argv = saved
    return 0


def redact_hydra_files() -> None:
    """Hide credentials in the files Hydra saved for this job (``.hydra/*.yaml``).

    Hydra writes the composed config, its own config and the command-line overrides verbatim
    before the job starts, and has no hook to filter them, so a password inside a storage or
    tracking URL would sit there in plain text: rewrite them, line by line, through ``redact``.
    Call it first thing in a ``@hydra.main`` function.
    """
    from hydra.core.hydra_config import HydraConfig

    from tuning.files import atomic_text
    from tuning.redaction import redact

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None:
        return
    for path in (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml"):
        text = path.read_text()
        clean = "".join(redact(line) or "" for line in text.splitlines(keepends=True))
        if clean != text:
            with atomic_text(path) as out:
                out.write(clean)
