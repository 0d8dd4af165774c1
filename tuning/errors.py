"""Error policy: what stops the program (bad config or data) vs what fails one trial."""

from __future__ import annotations


class TuningError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TuningError):
    """Invalid configuration: fatal, reported as one line with exit code 2.

    Args:
        key: dotted config key (or file) at fault.
        message: what was wrong and what is allowed.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class DataError(ConfigError):
    """Unusable data (missing file, bad target, too few rows): fatal, exit code 2."""


class TrialFailed(TuningError):
    """One trial failed (diverged, NaN): the trial ends FAIL, the study goes on."""


class TrialPruned(TuningError):
    """The engine stopped a trial early from its epoch values: the trial ends PRUNED, the study goes on."""


class CtrlC(KeyboardInterrupt):
    """SIGINT as this package's handlers raise it (``tuning.interrupts``): exit code 130.

    A subclass on purpose. ``python -m tuning`` would exit killed by SIGINT (status -2, not 130)
    whenever a plain KeyboardInterrupt last left an exec() or eval() of a string, as when an
    import makes a dataclass or a namedtuple, even one caught and handled since: CPython's
    "unhandled KeyboardInterrupt" flag tests the exception's exact type.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, Docker, Kubernetes, SLURM): handled like Ctrl-C, exit code 143."""


class StudyStopped(TuningError):
    """The sweep stopped itself (too many failed trials in a row): one line, exit code 2."""
