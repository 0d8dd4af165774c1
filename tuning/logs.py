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
from collections.abc import Iterator
from typing import Any

OURS = "tuning"


class OwnLinesOnly(logging.Filter):
    """For terminal handlers: records of the ``tuning`` loggers, and errors of any other."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OURS or record.name.startswith(f"{OURS}.")
        return own or record.levelno >= logging.ERROR


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
def host_logging_kept() -> Iterator[None]:
    """Run a Hydra app in-process and leave the host's logging as it found it.

    For each run Hydra sets up logging with ``logging.config.dictConfig``, which closes every
    handler alive in the process, the host's included, and puts its own handlers (a console one
    bound to the ``sys.stdout`` of the moment, the run's log file) on the root logger, where they
    stay. Closing a handler can close its stream: absl's, created when TensorFlow is imported,
    closes the stderr of that moment unless it is still the current ``sys.stderr``. A host that
    redirected stderr since (pytest's capture, ``contextlib.redirect_stderr``) lost that stream,
    and later lines went to a console handler whose stream the host had closed.

    So the host's handlers are out of Hydra's reach for the run (out of the list of live
    handlers that ``dictConfig`` closes), and afterwards the handlers Hydra put on the root logger
    are closed (the log file complete) and the root logger gets back its handlers, their filters
    (:func:`quiet_terminal`) and its level, and every logger its ``disabled`` flag. From the
    command line this changes nothing: the process ends with the run.
    """
    live: Any = getattr(logging, "_handlerList", None)  # weak references: what dictConfig closes
    named: Any = getattr(logging, "_handlers", None)  # handlers by name, which dictConfig clears
    lock = getattr(logging, "_lock", None) or contextlib.nullcontext()
    root = logging.getLogger()
    with lock:
        handlers, level = root.handlers[:], root.level
        filters = {handler: handler.filters[:] for handler in handlers}
        loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
        disabled = {lg: lg.disabled for lg in [root, *loggers]}
        hidden = live[:] if isinstance(live, list) else []
        names = dict(named) if isinstance(named, dict) else {}
        if hidden:
            del live[: len(hidden)]
    try:
        yield
    finally:
        with lock:
            for handler in root.handlers[:]:
                if handler not in filters:
                    root.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
                handler.filters[:] = filters[handler]
            root.setLevel(level)
            for lg, was in disabled.items():
                lg.disabled = was
            if hidden:
                live[:0] = hidden
            for name, handler in names.items():
                named.setdefault(name, handler)
