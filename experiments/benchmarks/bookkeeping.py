"""Bookkeeping per trial, part by part, and whether it grows with the study.

The project's own sweep in rehearsal mode (``training.simulate_epoch_seconds=0``: no TensorFlow,
each epoch reports a made-up value at once, so a trial's whole time is bookkeeping; with
``--epoch-seconds S`` each sleeps S seconds, left out of the figures), one worker
in this process, on PostgreSQL (pgserver) like a many-worker study. Timers wrapped around the
libraries' classes split each trial's time; each part is counted without the parts it calls:

- sampler: the sampler's own arithmetic (Optuna's TPE and random samplers), without its reads;
- store reads, store writes: Optuna's storage layer (its cache, the ORM, SQL, the round trip);
- MLflow: ``MlflowClient``'s methods (tracking on: the default SQLite store in a scratch folder);
- rest: this project's runner (the loop, the records, the summaries, the progress line).

A trial's time runs from the end of one trial to the end of the next (the loop's own reads
between trials count). Timers count the main thread only: the heartbeat thread's writes overlap
the trial. Printed per window of trials (first, middle, last sixth): medians in ms, and the
last window's total over the first's (1.0: flat as the study grows). Settings as the scaling
benchmark: ``pruner=none training.max_epochs=2 data.n_samples=400``.

    python experiments/benchmarks/bookkeeping.py            # 600 trials, tracking off and on
    python experiments/benchmarks/bookkeeping.py --quick    # 60 trials
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

PARTS = ("sampler", "store reads", "store writes", "MLflow")
SAMPLER_METHODS = (
    "infer_relative_search_space",
    "sample_relative",
    "sample_independent",
    "before_trial",
    "after_trial",
)


class Clock:
    """Exclusive time per part: a timed call's time less the timed calls inside it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []  # [start, time in timed calls inside]
        self.main = threading.main_thread()

    def wrap(self, part: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not self.main:
                return method(*args, **kwargs)
            frame = [time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return method(*args, **kwargs)
            finally:
                self.stack.pop()
                elapsed = time.perf_counter() - frame[0]
                self.totals[part] += elapsed - frame[1]
                if self.stack:
                    self.stack[-1][1] += elapsed

        return timed

    def instrument(self) -> None:
        """Wrap the sampler, storage (``common.storage_classes``) and MLflow client classes'
        public methods."""
        import optuna
        from mlflow import MlflowClient

        for cls in (optuna.samplers.TPESampler, optuna.samplers.RandomSampler):
            for name in SAMPLER_METHODS:
                if name in vars(cls):
                    setattr(cls, name, self.wrap("sampler", vars(cls)[name]))
        for cls in common.storage_classes():
            for name, method in list(vars(cls).items()):
                if name.startswith("_") or not callable(method):
                    continue
                part = "store reads" if name.startswith(("get_", "check_")) else "store writes"
                setattr(cls, name, self.wrap(part, method))
        for name, method in list(vars(MlflowClient).items()):
            if not name.startswith("_") and callable(method):
                setattr(MlflowClient, name, self.wrap("MLflow", method))


def one_sweep(
    clock: Clock, url: str, name: str, trials: int, *, tracking: bool, seconds: float = 0.0
) -> list[dict[str, float]]:
    """Per trial: its time less its simulated epochs (2 of ``seconds``), and each part's."""
    from tuning.search import loop
    from tuning.service.sweep import run

    rows: list[dict[str, float]] = []
    last = {"t": time.perf_counter(), **{p: clock.totals[p] for p in PARTS}}
    run_trial = loop.run_trial

    def counted(*args: Any, **kwargs: Any) -> Any:
        record = run_trial(*args, **kwargs)
        now = {"t": time.perf_counter(), **{p: clock.totals[p] for p in PARTS}}
        row = {k: now[k] - last[k] for k in now}
        row["t"] -= 2 * seconds  # the simulated epochs' sleep
        rows.append(row)
        last.update(now)
        return record

    loop.run_trial = counted
    try:
        with common.scratch_dir():
            overrides = [
                f'study.storage="{url}"',
                f"study.name={name}",
                f"study.n_trials={trials}",
                f"training.simulate_epoch_seconds={seconds:g}",
                "training.max_epochs=2",
                "pruner=none",
                "data.n_samples=400",
            ]
            if not tracking:
                overrides.append("tracking=none")
            run(common.settings(overrides))
    finally:
        loop.run_trial = run_trial
    return rows[1:]  # the first includes the sweep's start


def windows(rows: list[dict[str, float]]) -> list[tuple[str, list[dict[str, float]]]]:
    n = len(rows)
    k = max(n // 6, 1)
    middle = (n - k) // 2
    return [
        (f"{2}-{k + 1}", rows[:k]),
        (f"{middle + 2}-{middle + k + 1}", rows[middle : middle + k]),
        (f"{n - k + 2}-{n + 1}", rows[-k:]),
    ]


def report(label: str, rows: list[dict[str, float]]) -> None:
    print(f"{label}: {len(rows)} trials after the first; ms per trial, median (p90 of the total)")
    table = []
    totals = []
    for span, part in windows(rows):
        total = [r["t"] * 1000 for r in part]
        totals.append(statistics.median(total))
        parts = {p: statistics.median([r[p] * 1000 for r in part]) for p in PARTS}
        rest = statistics.median([(r["t"] - sum(r[p] for p in PARTS)) * 1000 for r in part])
        p90 = statistics.quantiles(total, n=10)[-1] if len(total) > 1 else total[0]
        table.append(
            [
                span,
                statistics.median(total),
                p90,
                *parts.values(),
                rest,
                statistics.median(total) - parts["sampler"],
            ]
        )
    header = ("trials", "total", "p90", *PARTS, "rest", "total - sampler")
    print(common.table(table, header))
    print(f"last window / first: {totals[-1] / totals[0]:.2f}x\n", flush=True)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=600)
    p.add_argument("--arms", default="off,on", help="tracking off, on, or both (off,on)")
    p.add_argument(
        "--epoch-seconds",
        type=float,
        default=0.0,
        help="seconds each of a trial's 2 epochs sleeps (left out)",
    )
    args = p.parse_args()
    trials = 60 if args.quick else args.trials
    started = time.perf_counter()
    common.print_header("bookkeeping per trial (rehearsal, one worker, PostgreSQL)", args)
    common.quiet_tuning_logs()
    from scaling import postgres

    clock = Clock()
    clock.instrument()
    with tempfile.TemporaryDirectory(prefix="tuning-bookkeeping-") as tmp:
        server = postgres(Path(tmp))
        try:
            for arm in args.arms.split(","):
                rows = one_sweep(
                    clock,
                    server.get_uri(),
                    f"book-{arm}",
                    trials,
                    tracking=arm == "on",
                    seconds=args.epoch_seconds,
                )
                report(f"tracking {arm}", rows)
        finally:
            server.cleanup()
    common.print_footer(started)


if __name__ == "__main__":
    main()
