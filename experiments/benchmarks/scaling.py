"""Scale-out: trials per minute with 1, 2 and 4 workers on this machine, and the storage cost of
one trial's bookkeeping as PostgreSQL workers grow to 32, with the connections they hold.

Part 1 runs `tuning sweep workers=W` as a user runs it (fresh folder, default SQLite study,
tracking off, CPU threads split), a fixed tiny MLP (plants, 2x64, 3 epochs, no pruning), the
worker counts interleaved and repeated; wall time includes each worker's start-up (TensorFlow
import, data), as a user pays it. On a 2-core machine 4 workers cannot beat 2: the figure says
what the split costs.

Part 2 measures what a cluster would be limited by: a real PostgreSQL 16 (pgserver), W worker
processes started together, each running trials whose objective does exactly the storage
writes a `tuning` trial does (9 parameters, the trial's user attributes, one epoch's reported
value, heartbeats) and no training. Seconds per trial (median over workers) and the
connections each worker holds (`pg_stat_activity`, sampled while they run). 32 processes on
2 cores are CPU-bound: read the per-trial figure as an upper bound.

    python experiments/benchmarks/scaling.py --quick   # ~8 min on 2 cores
    python experiments/benchmarks/scaling.py           # ~25 min
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

BOOKKEEPING = r"""
import json, os, sys, time
import warnings
import optuna
warnings.simplefilter("ignore")
from tuning.search.engines.optuna_storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
storage = open_storage(url, heartbeat_interval=30, grace_period=90)
study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                            sampler=optuna.samplers.TPESampler(seed=os.getpid()))
print("READY", flush=True)
sys.stdin.readline()  # every worker starts together
times = []
def objective(trial):
    start = time.perf_counter()
    trial.set_user_attr("worker", f"host:{os.getpid()}")
    trial.set_user_attr("worker_pidns", 1)
    trial.set_user_attr("sampler_seed", 1)
    p = [trial.suggest_int("n_layers", 1, 3), trial.suggest_int("units_0", 8, 128, log=True),
         trial.suggest_categorical("activation", ["relu", "tanh", "elu"]),
         trial.suggest_float("dropout", 0, 0.5), trial.suggest_float("learning_rate", 1e-4, 0.1, log=True),
         trial.suggest_categorical("batch_size", [16, 32, 64, 128]), trial.suggest_int("epochs", 20, 100, step=20),
         trial.suggest_categorical("optimizer", ["adam", "rmsprop", "sgd"]),
         trial.suggest_categorical("loss", ["a", "b"])]
    for key in ("seed", "metric", "n_params", "epochs_trained"):
        trial.set_user_attr(key, 1)
    trial.report(0.5, 0)
    trial.should_prune()
    for key in ("val_log_loss", "log_loss", "gap_log_loss", "best_epoch", "early_stopped", "seconds"):
        trial.set_user_attr(key, 0.5)
    times.append(time.perf_counter() - start)  # tell() and the heartbeat follow: timed below
    return sum(p[:2])
start = time.perf_counter()
study.optimize(objective, n_trials=n)
print("RESULT " + json.dumps({"per_trial": (time.perf_counter() - start) / n,
                              "objective_s": sorted(times)[len(times) // 2]}), flush=True)
"""


def sweep_once(workers: int, trials: int) -> float:
    """Trials per minute of one `tuning sweep workers=W` in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="tuning-scale-") as tmp:
        cmd = [
            *(sys.executable, "-m", "tuning", "sweep", f"workers={workers}", f"study.n_trials={trials}"),
            *("tracking=none", "pruner=none", "training.max_epochs=3", *common.fixed_overrides(epochs=3)),
        ]
        env = {**os.environ, "PYTHONPATH": str(common.REPO)}
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(
                f"workers={workers} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        finished = len(re.findall(r"\] trial \d+ COMPLETE", done.stdout))  # each trial's progress line
        return finished / (wall / 60)


def throughput(quick: bool) -> None:
    counts, trials, repeats = ((1, 2), 6, 2) if quick else ((1, 2, 4), 12, 3)
    rates: dict[int, list[float]] = {w: [] for w in counts}
    for r in range(repeats):
        for w in common.rotated([str(c) for c in counts], r):
            rates[int(w)].append(sweep_once(int(w), trials))
            print(f"  repeat {r + 1}: workers={w} {rates[int(w)][-1]:.1f} trials/min", flush=True)
    base = common.median(rates[1])
    rows = [
        (f"workers={w}", common.median(v), min(v), max(v), common.median(v) / base) for w, v in rates.items()
    ]
    print(f"\n1) `tuning sweep workers=W`, {trials} trials, {repeats} repeats interleaved (median, min, max)")
    print(common.table(rows, ["", "trials/min", "min", "max", "vs 1 worker"]))


def connections(url: str) -> int:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        ).scalar()
    engine.dispose()
    return int(n) - 1  # this query's own


def bookkeeping(quick: bool, only: tuple[int, ...] = ()) -> None:
    import pgserver

    counts, per_worker = ((1, 4, 16), 10) if quick else ((1, 4, 8, 16, 32), 20)
    counts = only or counts
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuning-pg-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            url = server.get_uri()
            script = Path(tmp) / "bookkeeping.py"
            script.write_text(BOOKKEEPING)
            for w in counts:
                env = {**os.environ, "PYTHONPATH": str(common.REPO)}
                procs = [
                    subprocess.Popen(
                        [sys.executable, str(script), url, f"scale-{w}", str(per_worker)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=env,
                    )  # fmt: skip
                    for _ in range(w)
                ]
                for p in procs:
                    assert p.stdout.readline().strip() == "READY"
                idle = connections(url)
                peak = [idle]

                def sample(procs=procs, peak=peak) -> None:
                    while any(p.poll() is None for p in procs):
                        peak.append(connections(url))
                        time.sleep(0.2)

                sampler = threading.Thread(target=sample, daemon=True)
                start = time.perf_counter()
                for p in procs:
                    p.stdin.write("go\n")
                    p.stdin.flush()
                sampler.start()
                results = [json.loads(p.communicate()[0].split("RESULT ", 1)[1]) for p in procs]
                wall = time.perf_counter() - start
                sampler.join()
                per_trial = [r["per_trial"] for r in results]
                writes = statistics.median(r["objective_s"] for r in results)
                rows.append((
                    w, statistics.median(per_trial) * 1000, min(per_trial) * 1000, max(per_trial) * 1000,
                    writes * 1000, w * per_worker / wall, max(peak) / w, idle / w,
                ))  # fmt: skip
                print(f"  workers={w}: {rows[-1][1]:.0f} ms/trial, peak {max(peak)} connections", flush=True)
        finally:
            server.cleanup()
    print(f"\n2) PostgreSQL 16 bookkeeping of a trial (no training), {per_worker} trials per worker")
    print("ms/trial: the whole trial (TPE sampling, writes, tell, heartbeat); in-trial writes: the")
    print("objective's own storage calls (median trial); conn/worker: pg_stat_activity / workers")
    header = [
        "workers",
        "ms/trial",
        "min",
        "max",
        "in-trial writes ms",
        "trials/s all",
        "conn/worker peak",
        "idle",
    ]
    print(common.table(rows, header))


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--parts", default="1,2", help="which parts to run: 1 (workers=W), 2 (PostgreSQL)")
    p.add_argument("--pg-workers", default="", help="part 2's worker counts, e.g. 1,32")
    args = p.parse_args()
    started = time.perf_counter()
    common.print_header("scaling: workers on one study", args)
    if "1" in args.parts:
        throughput(args.quick)
    if "2" in args.parts:
        bookkeeping(args.quick, tuple(int(w) for w in args.pg_workers.split(",") if w))
    common.print_footer(started)


if __name__ == "__main__":
    main()
