"""`tuning sweep workers=N`: N worker processes on this machine on one study, one progress display."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from tuning import interrupts
from tuning.config import Settings
from tuning.config.schema import Component, TrainingConfig
from tuning.errors import ConfigError

# One line per finished trial, from each worker's Progress; the worker's own count is rewritten
# with the launcher's (two workers that end together both read the same count from the study).
TRIAL_LINE = re.compile(r"(\[\d+/(\d+)(?:, not counted)?\]) trial \d+ (COMPLETE|PRUNED|FAIL)")
START_LINE = re.compile(r": (\d+)/(\d+) trials finished")
# Worse first: a bug (1) outranks a signal, which outranks a study that stopped itself (2).
SEVERITY = (1, 143, 130, 2)


# Engines whose study several processes can share through its storage.
SHARED_STUDY_ENGINES = ("optuna",)


def check_workers(workers: int, engine: Component) -> None:
    """``workers > 1`` needs an engine whose study lives in a shared storage."""
    if workers > 1 and engine.name not in SHARED_STUDY_ENGINES:
        raise ConfigError(
            "workers",
            f"{workers} with engine={engine.name}: its search state lives in one process; "
            f"workers > 1 needs engine={' or '.join(SHARED_STUDY_ENGINES)}",
        )


def worker_args(args: Sequence[str], training: TrainingConfig, n: int) -> list[str]:
    """The command line of each worker: the user's overrides, ``workers=1``, and CPU threads
    split between the workers unless ``training.threads`` is set."""
    out = [a for a in args if a.split("=", 1)[0].lstrip("+") != "workers"] + ["workers=1"]
    if training.threads is None:
        out.append(f"training.threads={max(1, (os.cpu_count() or 1) // n)}")
    return out


class Display:
    """Prints every worker's lines prefixed ``w<k>|``, with one trial count for the whole study:
    the count when the first worker opened it, plus each trial a worker reports finished."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.done: int | None = None

    def line(self, index: int, text: str) -> None:
        start = START_LINE.search(text)
        if start and self.done is None:
            self.done = int(start.group(1))
        trial = TRIAL_LINE.search(text)
        if trial:
            finished = trial.group(3) != "FAIL"
            self.done = (self.done or 0) + finished
            counter = f"[{self.done}/{trial.group(2)}{'' if finished else ', not counted'}]"
            text = text[: trial.start(1)] + counter + text[trial.end(1) :]
        self.out.write(f"w{index}| {text}")
        self.out.flush()


def exit_code(codes: Sequence[int]) -> int:
    """The launcher's exit code from its workers' (``codes`` in the order they ended): the worst
    of a bug, a signal or a self-stopped study; else the last worker's (0, or 3: trials missing)."""
    for code in SEVERITY:
        if code in codes:
            return code
    unexpected = [c for c in codes if c not in (0, 3)]
    return 1 if unexpected else codes[-1]


def launch(args: Sequence[str], settings: Settings) -> int:
    """Start ``workers`` processes on the same study and wait for all; returns the exit code.

    Each worker is ``tuning sweep`` itself with its index in ``TUNING_WORKER_INDEX`` (its
    sampler stream, ``tuning.search.workers``) and its own run folder (``runs/<time>-w<k>``).
    Ctrl-C and SIGTERM are passed on to every worker, which ends its trial as a single sweep does.
    """
    n = settings.workers
    command = [sys.executable, "-m", "tuning", "sweep", *worker_args(args, settings.training, n)]
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    procs = []
    for k in range(n):
        env = {**os.environ, "TUNING_WORKER_INDEX": str(k), "TUNING_RUN_SUFFIX": f"-w{k}"}
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,  # signals reach workers from here, once each
        )  # fmt: skip
        procs.append(proc)
        threading.Thread(target=_pump, args=(k, proc.stdout, lines), daemon=True).start()

    signalled: list[int] = []

    def forward(signum: int, frame: Any = None) -> None:
        signalled.append(signum)
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signum)

    main = interrupts.on_main_thread()
    previous = signal.signal(signal.SIGTERM, forward) if main else None
    display, ended, codes = Display(sys.stdout), 0, []
    try:
        while ended < n:
            try:
                index, text = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                forward(signal.SIGINT)
                continue
            if text is None:
                ended += 1
                codes.append(procs[index].wait())
            else:
                display.line(index, text)
    except KeyboardInterrupt:  # while printing: pass it on, then wait for every worker
        forward(signal.SIGINT)
        codes = [p.wait() for p in procs]
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return _outcome(procs, codes, signalled)


def _outcome(procs: Sequence[subprocess.Popen[str]], codes: Sequence[int], signalled: Sequence[int]) -> int:
    """The launcher's exit code, after a line for each worker a signal killed unasked."""
    if signalled:
        return 143 if signal.SIGTERM in signalled else 130
    for line in killed_lines([p.pid for p in procs], [p.wait() for p in procs]):
        print(line, file=sys.stderr)
    return exit_code(codes)


def killed_lines(pids: Sequence[int], codes: Sequence[int]) -> list[str]:
    """One line per worker a signal ended (kill -9, the out-of-memory killer): it could print
    nothing itself. ``codes``: the workers' return codes by index (negative: killed by a signal)."""
    lines = []
    for index, (pid, code) in enumerate(zip(pids, codes, strict=True)):
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            lines.append(
                f"error: workers: worker w{index} (pid {pid}) was killed by {name} (kill -9, or the "
                "out-of-memory killer) and left its trial RUNNING; the other workers went on: run the "
                "same command: it marks that trial FAIL and, if the study still needs trials, runs its parameters again"
            )
    return lines


def _pump(index: int, stream: TextIO | None, lines: queue.Queue[tuple[int, str | None]]) -> None:
    for text in stream or ():
        lines.put((index, text))
    lines.put((index, None))
