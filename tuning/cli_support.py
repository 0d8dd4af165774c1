"""Helpers shared by the command entry points: one-line errors, handing argv to a Hydra app."""

from __future__ import annotations

import sys
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


def run_hydra_app(app: Callable[[], None], prog: str, args: Sequence[str]) -> int:
    """Run a ``@hydra.main`` function with ``args`` as its command line."""
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
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
    from tuning.storage import redact

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None:
        return
    for path in (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml"):
        text = path.read_text()
        clean = "".join(redact(line) or "" for line in text.splitlines(keepends=True))
        if clean != text:
            with atomic_text(path) as out:
                out.write(clean)
