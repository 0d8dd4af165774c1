"""What reaches the terminal: our own lines; other libraries' notes go to the run's log file only.

TensorFlow ("N out of the last M calls ... triggered tf.function retracing"), Keras
("Batch 31: Invalid loss, terminating training"), MLflow ("Creating initial MLflow database
tables...", "Successfully registered model ...") and Hydra all write to the terminal on their
own. Each trial already has its one line, with the reason when it fails, so these notes would
only repeat it or describe internals. They stay in the run's log file (``runs/<time>/*.log``);
``verbose=true`` shows them in the terminal too. Errors of any library always show.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

OURS = "tuning"


class OwnLinesOnly(logging.Filter):
    """For terminal handlers: records of the ``tuning`` loggers, and errors of any other."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OURS or record.name.startswith(f"{OURS}.")
        return own or record.levelno >= logging.ERROR


class Redacted(logging.Filter):
    """For a library's logger whose lines may carry a URL with credentials (Hydra's launcher
    prints each job's overrides): the line with them hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tuning.redaction import redact_text

        record.msg, record.args = redact_text(record.getMessage()), ()
        return True


def quiet_terminal(verbose: bool = False) -> None:
    """Keep other libraries' notes out of the terminal, in the log file; call once the logging
    configuration is in place (first thing in a Hydra job).

    Keras is told to log rather than print where TensorFlow is imported
    (``tuning.model.backend``); MLflow's own handler is switched off where the command starts
    (:func:`leave_library_logging_to_us`).
    """
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        terminal = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if terminal and not any(isinstance(f, OwnLinesOnly) for f in handler.filters):
            handler.addFilter(OwnLinesOnly())


def leave_library_logging_to_us() -> None:
    """MLflow installs its own terminal handler when imported unless told not to; its records
    then reach ours (the log file). Called before anything imports MLflow; a user's own
    setting wins."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


@contextlib.contextmanager
def stderr_to_log(logger: logging.Logger) -> Iterator[None]:
    """Lines a library prints to stderr itself (MLflow's ``eprint``) become log records."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        try:
            yield
        finally:
            for line in buffer.getvalue().splitlines():
                if line.strip():
                    logger.info(line)


@contextlib.contextmanager
def job_logging(log_file: Path, config: Mapping[Any, Any], verbose: bool = False) -> Iterator[None]:
    """Hydra's ``job_logging`` for one job: its ``simple`` format to the terminal (our own lines
    unless ``verbose``) and to ``log_file``, the root logger at its level; all taken off after.

    Not through ``logging.config.dictConfig``, as Hydra applies it: that closes every handler
    alive in the process, a host's too (a notebook's, pytest's, absl's on a stream it owns), so a
    command run in-process would leave its host's logging broken.
    """
    simple = (config.get("formatters") or {}).get("simple") or {}
    formatter = logging.Formatter(simple.get("format"), simple.get("datefmt"))
    console = logging.StreamHandler(sys.stdout)
    if not verbose:
        console.addFilter(OwnLinesOnly())
    handlers: list[logging.Handler] = [console, logging.FileHandler(log_file)]
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel((config.get("root") or {}).get("level") or "INFO")
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


@contextlib.contextmanager
def root_logging_restored() -> Iterator[None]:
    """The root logger's handlers and level as they were, however the block configured them.

    Hydra's own command line (``--cfg``, ``-m``) applies its logging config to the root logger
    and leaves it there; a command run in-process (tests, a notebook) would keep those handlers
    and print every library's INFO line after it. Public API only: handlers added since are
    taken off and closed, the ones there before are put back.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
