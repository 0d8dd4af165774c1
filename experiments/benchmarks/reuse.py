"""Kept compiled models (``training.kept_models``): one sweep with them and one without, side by side.

Each repeat runs the same seeded sweep twice as ``tuning sweep`` does, each in a fresh process
(imports, data, study, MLflow: everything a user's sweep pays), with the default (a fresh model
per trial) and with ``training.kept_models=10``, order alternating between repeats. It prints
the wall time of each, their ratio, the median seconds from one trial's start to the next's
start, and checks that both found the same trials with the same values (1e-6).

    python experiments/benchmarks/reuse.py --quick    # 16 one-epoch trials, 1 repeat, ~3 min
    python experiments/benchmarks/reuse.py            # the default 50-trial plants sweep, 3 repeats, ~25 min

Each on two spaces: the default one, and one architecture whose learning rate, dropout and
batch size are searched (few structures: what kept models are for).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

ARMS = {"fresh": [], "kept": ["training.kept_models=10"]}
# The default space, and one architecture whose learning rate, dropout and batch size are tuned
# (what kept models are for: few structures, many short trials).
SPACES = {
    "default space": [],
    "one architecture (2 x 64 relu, adam)": [
        "search_space.n_layers=2",
        "search_space.units=64",
        "search_space.activation=relu",
        "search_space.optimizer=adam",
    ],
}


def run_sweep(folder: Path, name: str, extra: list[str], overrides: list[str]) -> float:
    args = [sys.executable, "-m", "tuning.cli", "sweep", f"study.name={name}", *overrides, *extra]
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def trials(folder: Path, name: str) -> list[tuple[int, str, dict[str, Any], float | None, float]]:
    from tuning.search.engines.optuna_study import load_summary

    study = load_summary(f"sqlite:///{folder / 'experiments' / name / 'optuna.db'}", name)
    return [(t.number, t.state, t.params, t.value, t.start_time or 0.0) for t in study.trials]


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, help="repeats per space (default 3, 1 with --quick)")
    args = p.parse_args()
    started = time.perf_counter()
    overrides = ["study.n_trials=16", "training.max_epochs=1", "pruner=none"] if args.quick else []
    repeats = args.repeats or (1 if args.quick else 3)
    common.print_header("kept compiled models: the same sweep with and without", args)
    print(
        f"tuning sweep {' '.join(overrides) or '(defaults: plants, 50 trials, TPE + ASHA, MLflow on)'}",
        flush=True,
    )
    with common.scratch_dir() as root:
        for space, fixed in SPACES.items():
            print(f"\n== {space} ==", flush=True)
            compare(root, [*overrides, *fixed], repeats, space.split()[0])
    common.print_footer(started)


def compare(root: Path, overrides: list[str], repeats: int, tag: str) -> None:
    """Both arms on one sweep, ``repeats`` times; prints each run, the medians and the ratio."""
    walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
    gaps: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for rep in range(repeats):
        found = {}
        for arm in common.rotated(list(ARMS), rep):
            name = f"{tag}-{arm}-{rep}"
            wall = run_sweep(root, name, ARMS[arm], overrides)
            found[arm] = trials(root, name)
            starts = sorted(t[4] for t in found[arm])
            between = [b - a for a, b in zip(starts, starts[1:], strict=False)]
            walls[arm].append(wall)
            gaps[arm].extend(between)
            print(
                f"repeat {rep + 1}/{repeats} {arm:<6} {wall:7.1f} s, {len(found[arm])} trials, "
                f"median {statistics.median(between):.2f} s from a trial's start to the next's",
                flush=True,
            )
        same_points = [t[:3] for t in found["kept"]] == [t[:3] for t in found["fresh"]]
        values = [(a[3], b[3]) for a, b in zip(found["kept"], found["fresh"], strict=True)]
        worst = max(
            (abs(a - b) / max(abs(b), 1e-12) for a, b in values if a is not None and b is not None),
            default=0.0,
        )
        print(f"  same trials (params, states): {same_points}; largest relative value difference {worst:.1e}")
    rows = [
        [
            arm,
            common.median(walls[arm]),
            " ".join(f"{w:.1f}" for w in walls[arm]),
            statistics.median(gaps[arm]),
        ]
        for arm in ARMS
    ]
    print(common.table(rows, ["arm", "wall s (median)", "each repeat", "s between trial starts (median)"]))
    ratio = common.median(walls["kept"]) / common.median(walls["fresh"])
    per_trial = statistics.median(gaps["kept"]) / statistics.median(gaps["fresh"])
    print(f"kept / fresh: wall {ratio:.2f}x, seconds between trial starts {per_trial:.2f}x")


if __name__ == "__main__":
    main()
