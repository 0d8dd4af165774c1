"""Scale-out: trials per minute with 1, 2 and 4 real workers on this machine, and the
bookkeeping per trial of the project's own sweep (rehearsal mode) from 1 to 64 workers on one
PostgreSQL, directly and through `tuning storage-proxy`, with a queueing model up to 1,000.

Part 1 runs `tuning sweep workers=W` as a user runs it (fresh folder, default SQLite study,
tracking off, CPU threads split), a fixed tiny MLP (plants, 2x64, 3 epochs, no pruning), the
worker counts interleaved and repeated; wall time includes each worker's start-up (TensorFlow
import, data), as a user pays it; and it counts repeated configurations. On a 2-core machine 4
workers cannot beat 2: the figure says what the split costs.

Part 2 runs W `tuning sweep` processes (each with its worker index) in rehearsal mode
(`training.simulate_epoch_seconds`, `--epochs` epochs of `--epoch-seconds`: no TensorFlow) on
one real PostgreSQL 16 (pgserver, max_connections 400), first directly (`study.storage=
postgresql://...`), then through `tuning storage-proxy` (`study.storage=grpc://...`). Once every
worker has finished a trial, `--window` seconds are measured; the workers are then stopped
(SIGTERM) and the figures read from the study: trials finished in the window per second, and per
trial the time that was not simulated epochs (bookkeeping: TPE sampling, the study's reads and
writes, the loop's reads between trials, the worker's own Python). Connections (pg_stat_activity)
and memory (RSS) are sampled in the window. W processes share this machine's cores: past a few
workers the CPU, not the store, is what the figures measure (the output says which).

    python experiments/benchmarks/scaling.py --quick --parts 2    # 1, 4, 16 workers: ~5 min
    python experiments/benchmarks/scaling.py --parts 2            # 1, 4, 16, 32, 64: ~15 min
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import common

from tuning.study.summary import flat_attrs


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


def workers_with_a_trial(url: str, study: str) -> int:
    """Workers that have finished a trial in ``study`` (one cheap query, not the whole study)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    query = text(
        "SELECT count(DISTINCT a.value_json) FROM trial_user_attributes a JOIN trials t USING (trial_id) "
        "JOIN studies s USING (study_id) WHERE s.study_name = :name AND a.key = 'owner' AND t.state = 'COMPLETE'"  # one per process
    )
    with engine.connect() as c:
        n = c.execute(query, {"name": study}).scalar()
    engine.dispose()
    return int(n or 0)


def start_proxy(url: str, folder: Path) -> tuple[subprocess.Popen[str], str]:
    """`tuning storage-proxy` in front of ``url``; returns it and its grpc:// address."""
    import grpc

    port = common_free_port()
    env = {**os.environ, "PYTHONPATH": str(common.REPO)}
    cmd = [
        sys.executable,
        "-m",
        "tuning",
        "storage-proxy",
        "--storage",
        url,
        "--port",
        str(port),
        "--threads",
        "64",
    ]
    proc = subprocess.Popen(
        cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True
    )
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=120)
    return proc, f"grpc://localhost:{port}"


def common_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rehearsal_workers(
    storage: str, study: str, workers: int, folder: Path, *, epochs: int, seconds: float
) -> list[Any]:
    """``workers`` processes of `tuning sweep` in rehearsal mode, each with its own index."""
    args = [
        *(sys.executable, "-m", "tuning", "sweep", f'study.storage="{storage}"', f"study.name={study}"),
        *(
            "study.n_trials=1000000",
            f"training.simulate_epoch_seconds={seconds}",
            f"training.max_epochs={epochs}",
        ),
        *("pruner=none", "tracking=none", "data.n_samples=400"),
    ]
    procs = []
    for k in range(workers):  # an index each: its own sampler stream and run folder, as workers=W gives
        env = {
            **os.environ,
            "PYTHONPATH": str(common.REPO),
            "TUNING_WORKER_INDEX": str(k),
            "TUNING_RUN_SUFFIX": f"-w{k}",
        }
        procs.append(
            subprocess.Popen(args, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        )
    return procs


def store_seconds(url: str) -> tuple[float, int]:
    """Seconds PostgreSQL spent executing statements in the database so far
    (``pg_stat_database.active_time``): the store's own service time, whoever asked; and the
    transactions it committed (each a round trip at least)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        ms, commits = c.execute(
            text("SELECT active_time, xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).one()
    engine.dispose()
    return float(ms or 0.0) / 1000, int(commits or 0)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def measure(
    url: str,
    storage: str,
    workers: int,
    *,
    window: float,
    epochs: int,
    seconds: float,
    proxy_pid: int | None = None,
) -> dict[str, Any]:
    """Start the workers, wait until each has finished a trial, measure ``window`` seconds of
    steady running (trials, connections, memory, the store's and the workers' CPU), then
    SIGTERM them and read the study."""
    import optuna
    import psutil

    study = f"scale-{'grpc' if storage.startswith('grpc') else 'pg'}-{workers}"
    with tempfile.TemporaryDirectory(prefix="tuning-scale-") as tmp:
        procs = rehearsal_workers(storage, study, workers, Path(tmp), epochs=epochs, seconds=seconds)
        launched = time.monotonic()
        while workers_with_a_trial(url, study) < workers:
            if any(p.poll() is not None for p in procs):
                sys.exit(f"a worker of {study} exited early; run one by hand to see why")
            time.sleep(1)
        started_all = time.monotonic() - launched
        pids = [p.pid for p in procs]
        store0, cpu0 = store_seconds(url), cpu_seconds(pids)
        proxy0 = cpu_seconds([proxy_pid]) if proxy_pid else 0.0
        t0 = datetime.now()
        peak_conn, rss = 0, {p.pid: 0.0 for p in procs}
        while (datetime.now() - t0).total_seconds() < window:
            peak_conn = max(peak_conn, connections(url))
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss[p.pid] = max(rss[p.pid], psutil.Process(p.pid).memory_info().rss / 1e6)
            time.sleep(0.5)
        t1 = datetime.now()
        cpu = cpu_seconds(pids) - cpu0
        proxy = cpu_seconds([proxy_pid]) - proxy0 if proxy_pid else 0.0
        time.sleep(1)  # PostgreSQL publishes its statistics about once a second
        store1 = store_seconds(url)
        store, commits = store1[0] - store0[0], store1[1] - store0[1]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
    trials = optuna.load_study(study_name=study, storage=url).trials
    found = summarise(trials, t0, t1, epochs * seconds)
    finished = max(found["rate"] * (t1 - t0).total_seconds(), 1)
    return found | {
        "store_ms": store / finished * 1000,
        "commits": commits / finished,
        "worker_cpu_ms": cpu / finished * 1000,
        "proxy_cpu_ms": proxy / finished * 1000,
        "workers": workers,
        "startup_s": started_all,
        "conn": peak_conn,
        "rss_mb": statistics.median(rss.values()),
    }


def summarise(trials: list[Any], t0: datetime, t1: datetime, sleep: float) -> dict[str, Any]:
    """From the study itself: trials finished in the window per second, and per trial the time
    that was not the simulated epochs, inside the trial (ask to tell) and per cycle (one
    worker's trial start to its next: the loop's reads between trials too)."""
    done = [t for t in trials if t.state.name == "COMPLETE"]
    configs = [tuple(sorted(t.params.items())) for t in done]
    inside = [t for t in done if t0 <= t.datetime_start and t.datetime_complete <= t1]
    in_trial = [(t.datetime_complete - t.datetime_start).total_seconds() - sleep for t in inside]
    by_worker: dict[str, list[Any]] = {}
    for t in done:
        by_worker.setdefault(str(flat_attrs(t.user_attrs).get("worker")), []).append(t)
    cycles = []
    for own in by_worker.values():
        own.sort(key=lambda t: t.datetime_start)
        for a, b in zip(own, own[1:], strict=False):
            if t0 <= a.datetime_start and b.datetime_start <= t1:
                cycles.append((b.datetime_start - a.datetime_start).total_seconds() - sleep)
    finished = sum(1 for t in done if t0 <= t.datetime_complete <= t1)
    return {
        "rate": finished / (t1 - t0).total_seconds(),
        "in_trial": in_trial,
        "cycle": cycles,
        "complete": len(done),
        "repeats": len(configs) - len(set(configs)),
        "numbers_unique": len({t.number for t in trials}) == len(trials),
    }


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile, in ms."""
    if not values:
        return (math.nan, math.nan, math.nan)
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return statistics.median(ordered) * 1000, pick(0.1), pick(0.9)


def bookkeeping(quick: bool, only: tuple[int, ...], window: float, epochs: int, seconds: float) -> None:
    """Part 2: the project's own sweep in rehearsal mode on a real PostgreSQL 16 (pgserver),
    W workers direct and through `tuning storage-proxy`, then the queueing model."""
    counts = only or ((1, 4, 16) if quick else (1, 4, 16, 32, 64))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tuning-pg-") as tmp:
        server = postgres(Path(tmp))
        proxy = None
        try:
            url = server.get_uri()
            proxy, grpc_url = start_proxy(url, Path(tmp))
            for w in counts:
                if not memory_for(w):
                    continue
                for mode, storage in (("direct", url), ("proxy", grpc_url)):
                    pid = proxy.pid if mode == "proxy" else None
                    r = measure(url, storage, w, window=window, epochs=epochs, seconds=seconds, proxy_pid=pid)
                    r["mode"] = mode
                    results.append(r)
                    print(
                        f"  {mode} workers={w}: {r['rate']:.2f} trials/s, in-trial {spread(r['in_trial'])[0]:.0f} ms, "
                        f"cycle {spread(r['cycle'])[0]:.0f} ms, repeats {r['repeats']}",
                        flush=True,
                    )
        finally:
            if proxy is not None:
                proxy.send_signal(signal.SIGTERM)
                proxy.wait(timeout=60)
            server.cleanup()
    report(results, epochs * seconds)


def memory_for(workers: int, per_worker_mb: float = 300.0) -> bool:
    """Whether ``workers`` rehearsal workers fit in the memory available now (each ~270 MB:
    pandas, scikit-learn, Optuna, SQLAlchemy, Hydra); says so when they do not."""
    import psutil

    available = psutil.virtual_memory().available / 1e6
    if available >= workers * per_worker_mb * 1.2:
        return True
    print(
        f"  workers={workers}: skipped, {available:.0f} MB available for ~{workers * per_worker_mb:.0f} MB of workers"
    )
    return False


def postgres(folder: Path, max_connections: int = 400) -> Any:
    """A PostgreSQL 16 server (pgserver) that takes ``max_connections`` (its default 100 is
    under 64 workers' 2 each)."""
    import pgserver

    data = folder / "pgdata"
    pgserver.get_server(data, cleanup_mode="stop").cleanup()  # initdb, then stop to configure
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nmax_connections = {max_connections}\n")
    return pgserver.get_server(data, cleanup_mode="stop")


def report(results: list[dict[str, Any]], sleep: float) -> None:
    """The measured table, then the queueing model beside it."""
    rows = []
    base = {r["mode"]: r["rate"] for r in results if r["workers"] == 1}
    for r in results:
        cycle = spread(r["cycle"])
        speedup = r["rate"] / base[r["mode"]] if base.get(r["mode"]) else math.nan
        conn = r["conn"] / r["workers"] if r["mode"] == "direct" else r["conn"]
        rows.append((
            r["mode"], r["workers"], *cycle, spread(r["in_trial"])[0], r["rate"], speedup,
            speedup / r["workers"], r["store_ms"], r["commits"], r["proxy_cpu_ms"], r["worker_cpu_ms"], r["repeats"],
            conn, r["rss_mb"], r["startup_s"],
        ))  # fmt: skip
    print(
        f"\n2) the project's sweep in rehearsal mode ({sleep:g} s of simulated epochs a trial), PostgreSQL 16"
    )
    print("bookkeeping: a worker's time per trial that is not simulated epochs; cycle: one trial's start to")
    print("the worker's next (the loop's reads between trials count), median, p10, p90 ms; in-trial: ask to")
    print("tell, median ms. trials/s: finished in the window with every worker running. Per trial: PG ms,")
    print("PostgreSQL's own statement time (pg_stat_database.active_time); proxy CPU ms; worker CPU ms (all")
    print(
        "workers' CPU / trials); PG commits: transactions per trial. conn: PostgreSQL connections per worker (direct) or in all (proxy)."
    )
    header = [
        "storage", "workers", "cycle ms", "p10", "p90", "in-trial", "trials/s", "vs 1", "efficiency",
        "PG ms", "PG commits", "proxy ms", "worker CPU ms", "repeats", "conn", "RSS MB", "startup s",
    ]  # fmt: skip
    print(common.table(rows, header))
    for mode in ("direct", "proxy"):
        one = [r for r in results if r["mode"] == mode and r["workers"] == 1]
        if one:
            model(mode, one[0], sleep, results)


def model(mode: str, one: dict[str, Any], sleep: float, results: list[dict[str, Any]]) -> None:
    """Queueing on the store, from one worker's measurements: each worker asks for a trial every
    ``sleep`` + bookkeeping seconds; the store serves a trial in ``service`` seconds (PostgreSQL's
    statement time, or the proxy's CPU when larger: one Python process); utilisation = rate x
    service, saturated at W = (sleep + bookkeeping) / service, beyond which the rate stays at
    1 / service; below it each trial waits service x rho / (1 - rho) more (M/M/1). The workers'
    own CPU is not the store's: on this machine it caps the rate at cores / CPU per trial."""
    measured = {r["workers"]: r for r in results if r["mode"] == mode}
    bookkeeping = spread(one["cycle"])[0] / 1000
    service = max(one["store_ms"], one["proxy_cpu_ms"]) / 1000
    cycle = sleep + bookkeeping
    rows = []
    for w in sorted({1, 4, 16, 32, 64, 100, 200, 500, 1000} | set(measured)):
        rate = min(w / cycle, 1 / service)
        rho = rate * service
        wait = (bookkeeping + service * rho / (1 - rho)) * 1000 if rho < 1 else math.inf
        seen = measured.get(w)
        rows.append((
            w, rate, rho, wait, seen["rate"] if seen else "", spread(seen["cycle"])[0] if seen else "",
        ))  # fmt: skip
    cpu = one["worker_cpu_ms"] / 1000
    print(
        f"\nmodel ({mode}): store service {service * 1000:.1f} ms a trial, bookkeeping {bookkeeping * 1000:.0f} ms, "
        f"{sleep:g} s of epochs: the store saturates at {cycle / service:.0f} workers ({1 / service:.0f} trials/s); "
        f"with 60 s trials at {(60 + bookkeeping) / service:.0f} workers. This machine's {common.cores()} cores cap "
        f"the workers' own CPU ({cpu * 1000:.0f} ms a trial) at {common.cores() / cpu:.1f} trials/s"
    )
    header = [
        "workers",
        "model trials/s",
        "utilisation",
        "model bookkeeping ms",
        "measured trials/s",
        "measured ms",
    ]
    print(common.table(rows, header))


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--parts", default="1,2", help="which parts to run: 1 (workers=W), 2 (PostgreSQL)")
    p.add_argument("--pg-workers", default="", help="part 2's worker counts, e.g. 1,32")
    p.add_argument(
        "--window", type=float, default=30.0, help="part 2: seconds measured with every worker running"
    )
    p.add_argument("--epochs", type=int, default=2, help="part 2: simulated epochs a trial")
    p.add_argument("--epoch-seconds", type=float, default=1.0, help="part 2: training.simulate_epoch_seconds")
    args = p.parse_args()
    started = time.perf_counter()
    common.print_header("scaling: workers on one study", args)
    if "1" in args.parts:
        throughput(args.quick)
    if "2" in args.parts:
        only = tuple(int(w) for w in args.pg_workers.split(",") if w)
        bookkeeping(args.quick, only, args.window, args.epochs, args.epoch_seconds)
    common.print_footer(started)


if __name__ == "__main__":
    main()
