"""The default sweep with one setting and without, as a user runs it: what it finds and costs.

For each data set and seed, the same ``tuning sweep`` (the default: 50 trials, TPE + ASHA; each
in a fresh process, tracking off) twice, without and with ``--setting KEY=VALUE``, order
alternating between seeds; then ``tuning train`` on each sweep's best.yaml scores its pick once
on the test split. Per run: wall seconds, epochs trained (summed over every trial), complete and
pruned trials, the best validation score, the pick's test score; per data set, the medians and
how often the setting was at least as good on the same seed.

    python experiments/benchmarks/setting.py --quick  # plants, 1 seed, 12 trials: ~2 min
    python experiments/benchmarks/setting.py --setting pruner.bootstrap_count=1 --datasets plants diabetes --seeds 1 2 3
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common


def sweep_and_train(
    root: Path, data: str, seed: int, extra: list[str], overrides: list[str]
) -> dict[str, Any]:
    """One sweep and its final model's test score, in fresh processes as a user runs them."""
    from tuning.search.engines.optuna_study import load_summary
    from tuning.study.summary import flat_attrs

    name = f"{data}-{seed}-{len(extra)}"
    args = [f"data={data}", f"seed={seed}", f"study.name={name}", "tracking=none", *overrides, *extra]
    tuning = [sys.executable, "-m", "tuning.cli"]
    start = time.perf_counter()
    subprocess.run([*tuning, "sweep", *args], cwd=root, check=True, capture_output=True)
    wall = time.perf_counter() - start
    subprocess.run(
        [*tuning, "train", f"study={name}", "tracking=none"], cwd=root, check=True, capture_output=True
    )
    folder = root / "experiments" / name
    meta = json.loads((folder / "final" / "meta.json").read_text())
    test = meta["metrics"]["test"]
    study = load_summary(f"sqlite:///{folder / 'optuna.db'}", name)
    states = [t.state for t in study.trials]
    best = study.best()
    return {
        "wall": wall,
        "epochs": sum(int(flat_attrs(t.user_attrs).get("epochs_trained") or 0) for t in study.trials),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "best": best.value if best is not None else float("nan"),
        "test": test.get("rmse", test.get("log_loss")),
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--setting", default="pruner.bootstrap_count=1", help="the override compared (KEY=VALUE)")
    p.add_argument("--datasets", nargs="+", help="default: plants diabetes (plants with --quick)")
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3 (1 with --quick)")
    args = p.parse_args()
    started = time.perf_counter()
    overrides = ["study.n_trials=12", "training.max_epochs=20"] if args.quick else []
    datasets = args.datasets or (["plants"] if args.quick else ["plants", "diabetes"])
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    arms = {"default": [], args.setting: [args.setting]}
    common.print_header(f"the default sweep without and with {args.setting}", args)
    print(
        f"tuning sweep {' '.join(overrides) or '(defaults: 50 trials, TPE + ASHA)'} tracking=none\n",
        flush=True,
    )
    columns = ["wall", "epochs", "complete", "pruned", "best", "test"]
    with common.scratch_dir() as root:
        for data in datasets:
            runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
            rows = []
            for seed in seeds:
                for arm in common.rotated(list(arms), seed):
                    run = sweep_and_train(root, data, seed, arms[arm], overrides)
                    runs[arm].append(run)
                    rows.append([f"{arm}, seed {seed}", *(run[c] for c in columns)])
                    print(f"{data} seed {seed} {arm}: {json.dumps(run)}", flush=True)
            rows += [
                [f"{arm}, median", *(common.median([r[c] for r in runs[arm]]) for c in columns)]
                for arm in arms
            ]
            header = ["run", "wall s", "epochs", "complete", "pruned", "best val", "test of pick"]
            print(f"\n{data} (lower is better: val/test log loss, or RMSE in the target's units)")
            print(common.table(rows, header))
            pairs = list(zip(runs["default"], runs[args.setting], strict=True))
            for c in ("best", "test"):
                wins = sum(b[c] <= a[c] for a, b in pairs)
                print(f"{args.setting} at least as good as the default on {c}: {wins}/{len(pairs)} seeds")
            print(flush=True)
    common.print_footer(started)


if __name__ == "__main__":
    main()
