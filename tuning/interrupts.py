"""Ctrl-C and SIGTERM that never land inside a write to a store.

Python raises a signal's exception wherever the main thread happens to be. Inside a storage
commit (SQLAlchemy over SQLite or PostgreSQL, MLflow's store) that can leave the transaction
open: SQLite stays locked and the same process's next write (telling the interrupted trial
FAIL) waits out the lock timeout, then fails as a lost store. So writes run ``shielded()``: a
signal that arrives inside is held, and raised as soon as the write is done. A second signal
while one is held is raised at once (press Ctrl-C twice to stop a write that hangs).

Neither Python nor the libraries offer this (``signal`` only installs handlers), hence this
module; it holds no state but the one held signal of this process.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from tuning.errors import CtrlC, Terminated

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

log = logging.getLogger("tuning")


@dataclass
class _State:
    depth: int = 0  # shielded writes in progress
    handlers: int = 0  # handled() blocks in progress
    held: list[KeyboardInterrupt] = field(default_factory=list)  # at most one
    received: KeyboardInterrupt | None = None  # the last signal, raised or not


_state = _State()


def on_main_thread() -> bool:
    """Signal handlers can be installed (and signals arrive) on the main thread only."""
    return threading.current_thread() is threading.main_thread()


def deliver(error: KeyboardInterrupt) -> None:
    """Raise ``error`` now, or hold it while a write is shielded (the first one only)."""
    if _state.depth and not _state.held:
        _state.held.append(error)
        return
    _state.held.clear()
    raise error


def received() -> KeyboardInterrupt | None:
    """The last Ctrl-C / SIGTERM of this command, even one whose raise was swallowed.

    Python ignores an exception raised inside a gc callback ("Exception ignored in ...
    _xla_gc_callback"), so a signal can land and raise nothing; the sweep checks this at the
    points where stopping is safe (each epoch's end, before each trial).
    """
    return _state.received


def check() -> None:
    """Raise the command's signal if one came, even one whose raise was swallowed: called
    where stopping is safe (each epoch's end, before each trial)."""
    if _state.received is not None:
        raise _state.received


def release() -> None:
    """Raise the signal held during a write, if any (a point where stopping is safe)."""
    if _state.held and not _state.depth:
        raise _state.held.pop()


def _ctrl_c(num: int, frame: FrameType | None) -> None:
    raise CtrlC()


@contextmanager
def for_this_command() -> Iterator[None]:
    """For a command's run, Ctrl-C raises ``CtrlC`` instead of Python's plain KeyboardInterrupt.

    Python's own handler would make ``python -m tuning`` exit by SIGINT (-2) after printing our
    130 line, when the signal landed while an import was making a dataclass (see ``CtrlC``). A
    handler set by someone else, or SIG_IGN (a background job), is left alone; Python's is back
    at the end.
    """
    ours = on_main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, _ctrl_c)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def shielded(*, release_at_exit: bool = True) -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM while the body writes; raise a held one when it is done.

    With ``release_at_exit=False`` the caller raises it later with ``release()``, where the
    sweep can account for what the body produced (a trial just asked for).
    """
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if release_at_exit:
        release()


@contextmanager
def handled() -> Iterator[None]:
    """Deliver SIGINT as ``CtrlC`` and SIGTERM as ``Terminated`` (both KeyboardInterrupt), through ``deliver``.

    Each is also kept as ``received()``. A signal the process ignores (SIG_IGN, e.g. a
    background job's SIGINT) stays ignored. A raise Python swallows (the handler ran inside a gc
    or weakref callback) prints no "Exception ignored" traceback: the sweep acts on it at its next
    safe point. Off the main thread nothing is installed.
    """
    if not on_main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def install(signum: int, error: type[KeyboardInterrupt]) -> None:
        before = previous[signum] = signal.getsignal(signum)

        def handler(num: int, frame: FrameType | None) -> None:
            if before is signal.SIG_IGN:
                return
            _state.received = error()
            deliver(error())

        signal.signal(signum, handler)

    install(signal.SIGINT, CtrlC)
    install(signal.SIGTERM, Terminated)
    hook = sys.unraisablehook

    def unraisable(info: UnraisableHookArgs) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt):  # one of ours, kept as received()
            log.debug(f"a signal landed where Python cannot raise it ({info.object!r}); acted on next")
            return
        hook(info)

    sys.unraisablehook = unraisable
    _state.handlers += 1
    try:
        yield
    finally:
        _state.handlers -= 1
        sys.unraisablehook = hook
        for signum, before in previous.items():
            signal.signal(signum, before)
        if not _state.handlers:  # the command is over: nothing held outlives it
            _state.held.clear()
            _state.received = None
