"""Shared by the benchmark scripts: header, worker processes, medians, the fixed architecture.

Each method of a comparison runs in its own worker process (``<script> --child METHOD``),
started and warmed up once: ``tuning`` freezes the garbage collector's long-lived objects and
turns on TensorFlow's op determinism for its whole process, which would otherwise speed up or
slow down whichever method ran next in a shared process. The parent then asks the workers in
turn, one job at a time (the order rotates every repeat), so that a busy machine slows every
method alike, and reports medians and ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from tuning.config.schema import SplitConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, not its results
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's "creating tables" notes

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tensorflow", "keras", "optuna", "keras-tuner", "mlflow", "numpy")
RESULT_PREFIX = "RESULT "

# The one architecture every method trains in the overhead benchmark: the tutorial's MLP, fixed.
FIXED_MLP = {
    "n_layers": 2,
    "units": 64,
    "activation": "relu",
    "dropout": 0.0,
    "learning_rate": 0.001,
    "batch_size": 32,
    "epochs": 5,
    "optimizer": "adam",
}


def fixed_overrides(epochs: int = FIXED_MLP["epochs"]) -> list[str]:
    """``search_space.*`` overrides that make every trial train ``FIXED_MLP``."""
    values = {**FIXED_MLP, "epochs": epochs}
    return [f"search_space.{k}={v}" for k, v in values.items()] + ["search_space.loss=auto"]


# --- the header -------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (``/proc/cpuinfo`` when lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def print_header(title: str, args: argparse.Namespace) -> None:
    """Machine, versions, date, load and mode: what a reader needs to compare figures."""
    print(f"== {title} ==")
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine   {cpu_model()}, {cores()} cores, {platform.system()} {platform.release()}")
    print(f"python    {platform.python_version()}")
    print("versions  " + ", ".join(f"{p} {version(p)}" for p in PACKAGES))
    print(f"load avg  {load()} at start (other processes slow every method alike: see the ratios)")
    mode = "quick" if args.quick else "full"
    print(f"mode      {mode}; command: python {Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}".rstrip())
    print(flush=True)


def print_footer(started: float) -> None:
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load avg {load()} at the end", flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smaller run: under 5 minutes on 2 cores")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: be the worker of one method
    p.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    return p


# --- one process per method ------------------------------------------------------------------


class Worker:
    """A method's own process: imports and warms up once, then runs one job per request.

    The parent asks each worker in turn (interleaved) and waits: an idle worker blocks on its
    input and takes no CPU, so jobs never overlap.
    """

    def __init__(self, script: str, method: str, params: Mapping[str, Any] | None = None) -> None:
        self.method = method
        # stderr: TensorFlow's chatter, tracebacks; lives as long as the worker, closed by close()
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        cmd = [sys.executable, script, "--child", method, "--params", json.dumps(dict(params or {}))]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO
        )
        self.setup = self._answer()  # what the warm-up reported (seconds, versions, ...)

    def run(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run one job in the worker; its result."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(dict(job)) + "\n")
        self._proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
        self._log.close()

    def _answer(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith(RESULT_PREFIX):
                return json.loads(line.removeprefix(RESULT_PREFIX))
        self._proc.wait()
        self._log.seek(0)
        tail = "\n".join(self._log.read().splitlines()[-15:])
        raise RuntimeError(f"{self.method} worker failed (exit {self._proc.returncode}):\n{tail}")


@contextmanager
def workers(script: str, methods: Sequence[str], params: Mapping[str, Any] | None = None) -> Iterator[dict]:
    """One started ``Worker`` per method (started one after another), closed at the end."""
    started: dict[str, Worker] = {}
    try:
        for method in methods:
            started[method] = Worker(script, method, params)
        yield started
    finally:
        for worker in started.values():
            worker.close()


def emit(result: Mapping[str, Any]) -> None:
    """A worker's answer to its parent: one JSON line."""
    print(RESULT_PREFIX + json.dumps(dict(result)), flush=True)


Job = Callable[[dict[str, Any]], dict[str, Any]]


def serve(args: argparse.Namespace, setups: Mapping[str, Callable[[dict[str, Any]], Job]]) -> None:
    """In a worker: set up the method (imports, warm-up) in a scratch folder, then run the jobs
    read from stdin, one JSON line each, until stdin closes."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with scratch_dir():
        started = time.perf_counter()
        job = setups[args.child](json.loads(args.params))
        emit({"setup_s": time.perf_counter() - started})
        for line in sys.stdin:
            if line.strip():
                emit(job(json.loads(line)))


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """Work in a fresh temporary folder (removed afterwards): nothing lands in the repository."""
    old = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="tuning-bench-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(old)


def rotated(items: Sequence[str], k: int) -> list[str]:
    """``items`` starting at position ``k``: who runs first changes with every repeat."""
    k %= len(items)
    return [*items[k:], *items[:k]]


# --- numbers ----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain text table, columns right-aligned except the first."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


# --- what the methods share ------------------------------------------------------------------


def settings(overrides: Sequence[str]) -> dict[str, Any]:
    """The resolved ``tuning sweep`` config for ``overrides``, as the command composes it."""
    from tuning.config import compose, resolved

    return resolved(compose("config", list(overrides)))


def training(cfg: Mapping[str, Any] | None = None) -> Any:
    """The typed ``training`` part of a resolved config (default: the default sweep's)."""
    from tuning.config import parse

    return parse(settings([]) if cfg is None else cfg).training


def dataset(overrides: Sequence[str] = ()) -> Any:
    """The splits ``tuning sweep`` would train on for ``overrides`` (same seed, same rows)."""
    from tuning.config import DataConfig
    from tuning.data import load_dataset

    s = settings(overrides)
    return load_dataset(DataConfig.parse(s["data"]), SplitConfig.parse(s["split"]), int(s["seed"]))


def quiet_tuning_logs() -> None:
    """``tuning sweep`` logs one line per trial through Hydra; run() outside Hydra stays quiet,
    and MLflow is kept from installing its own handler, as the command does before it imports
    MLflow (``tuning.logs.leave_library_logging_to_us``)."""
    import logging

    from tuning.logs import leave_library_logging_to_us

    leave_library_logging_to_us()
    logging.getLogger("tuning").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    # "N out of the last M calls triggered tf.function retracing": one new model per trial.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def storage_classes() -> set[type]:
    """Optuna's storage classes a sweep's calls pass through, to wrap with a counter or timer:
    RDB storage and the cache Optuna puts over it, found as subclasses of the public
    ``BaseStorage`` (the cache hands parameters and new trials to the RDB class's private
    methods, so wrapping the RDB class alone misses them)."""
    import optuna

    return {optuna.storages.RDBStorage, *optuna.storages.BaseStorage.__subclasses__()}


def sweep(cfg: Any) -> Any:
    """``tuning sweep`` on a resolved config, in this process; returns the Optuna study itself
    (the sweep returns engine-neutral records; these benchmarks read Optuna's timestamps)."""
    import optuna

    from tuning.commands.sweep import run
    from tuning.config import parse

    summary = run(cfg)
    url = parse(cfg).storage_url
    return optuna.load_study(study_name=summary.name, storage=url)


def kt_dimension(hp: Any, name: str, spec: Any) -> Any:
    """One conf/search_space dimension declared in a KerasTuner ``hp`` (the peers' space)."""
    if spec["type"] == "categorical":
        return hp.Choice(name, list(spec["choices"]))
    sampling = "log" if spec.get("log") else "linear"
    step = spec.get("step")  # KerasTuner reads a step on a log scale as a factor: none there
    if spec["type"] == "int":
        step = None if spec.get("log") else step or 1
        return hp.Int(name, spec["low"], spec["high"], step=step, sampling=sampling)
    return hp.Float(name, spec["low"], spec["high"], step=step, sampling=sampling)
