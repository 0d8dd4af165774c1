"""Helpers shared by the command entry points: one-line errors, handing argv to a Hydra app."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
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


def run_hydra_app(app: Callable[[], None], prog: str, args: Sequence[str]) -> int:
    """Run a ``@hydra.main`` function with ``args`` as its command line."""
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        app()
    finally:
        sys.argv = saved
    return 0
