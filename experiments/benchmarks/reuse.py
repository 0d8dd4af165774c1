"""Kept compiled models (``training.kept_models``): one sweep with them and one without, side by side.

Each repeat runs the same seeded sweep twice as ``tuning sweep`` does, each in a fresh process
(imports, data, study, MLflow: everything a user's sweep pays), with the default (a fresh model
per trial) and with ``training.kept_models=10``, order alternating between repeats. It prints
the wall time of each, their ratio, the median seconds from one trial's start to the next's
start, and checks that both found the same trials with the same values (1e-6).

    python experiments/benchmarks/reuse.py --quick    # 16 one-epoch trials (the issue's figure), 1 repeat
    python experiments/benchmarks/reuse.py            # the default 50-trial plants sweep, 3 repeats
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
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    if args.quick:
        overrides, repeats = ["study.n_trials=16", "training.max_epochs=1", "pruner=none"], 1
    else:
        overrides, repeats = [], 3
    common.print_header("kept compiled models: the same sweep with and without", args)
    print(
        f"tuning sweep {' '.join(overrides) or '(defaults: plants, 50 trials, TPE + ASHA, MLflow on)'}\n",
        flush=True,
    )
    walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
    gaps: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with common.scratch_dir() as root:
        for rep in range(repeats):
            found = {}
            for arm in common.rotated(list(ARMS), rep):
                name = f"{arm}-{rep}"
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
            print(
                f"  same trials (params, states): {same_points}; largest relative value difference {worst:.1e}"
            )
    rows = [
        [
            arm,
            common.median(walls[arm]),
            " ".join(f"{w:.1f}" for w in walls[arm]),
            statistics.median(gaps[arm]),
        ]
        for arm in ARMS
    ]
    print()
    print(common.table(rows, ["arm", "wall s (median)", "each repeat", "s between trial starts (median)"]))
    ratio = common.median(walls["kept"]) / common.median(walls["fresh"])
    per_trial = statistics.median(gaps["kept"]) / statistics.median(gaps["fresh"])
    print(f"\nkept / fresh: wall {ratio:.2f}x, seconds between trial starts {per_trial:.2f}x")
    common.print_footer(started)


if __name__ == "__main__":
    main()
