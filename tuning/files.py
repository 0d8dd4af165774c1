"""Where and how files are written: folders checked up front, files written atomically (a crash
never leaves a half-written file in place of a good one), lock files held by one process at a time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from filelock import FileLock

from tuning.errors import ConfigError


@contextmanager
def atomic_text(path: str | Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """An open temporary file next to ``path``, moved onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline=newline) as fh:
            yield fh
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock file ``path`` (made if missing) for the block: one process at a time.

    The ``filelock`` package does the locking (``flock`` on POSIX, ``msvcrt`` on Windows; the OS
    releases it when the process dies). ``wait=False``: a lock held elsewhere raises
    ``TimeoutError`` at once instead of waiting.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, blocking=wait):
        yield


def check_writable_folder(folder: str | Path, key: str) -> None:
    """Fail now, writing nothing, when files cannot be created in ``folder`` (made if missing).

    Looks at the nearest part of the path that exists: it must be a folder this process may
    write to. (``os.access`` reports a read-only file system even to root.)

    Raises:
        ConfigError: under ``key``, naming the path and what is in the way.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, f"cannot create the folder {folder}: {existing} is a file; give a folder path")
    cannot = ConfigError(
        key, f"cannot write in {existing} (read-only, or no permission); give a folder you can write to"
    )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise cannot
    # os.access says yes to root anywhere, /proc and /sys included: make (and remove) a folder.
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".tuning-check-")).rmdir()
    except OSError:
        raise cannot from None


def check_writable_file(path: str | Path, key: str) -> None:
    """Fail now when ``path`` cannot become a file: it is a folder, or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(key, f"{path} is a folder; give a file path, e.g. {path / 'predictions.csv'}")
    check_writable_folder(path.parent, key)
