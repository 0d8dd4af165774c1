"""Overfitting-aware selection: does the pick do better on the untouched test split?

For each small real table (bundled scikit-learn sets) and seed, at the same trial budget
(``study.n_trials`` trials, pruning off so every trial completes):

- best         selection=best: the best validation score (today's default).
- constrained  selection=constrained, max_gap=MAX_GAP: the best score among trials whose gap
               on the metric is <= MAX_GAP (the smallest violation when none is).
- pareto       selection=pareto, max_gap=MAX_GAP: the Pareto front of (score, overfit gap),
               its best score within the gap (its smallest gap when none is).
- cv5          cv.folds=5: a sweep of its own, each trial scored as the mean over 5 folds of
               train+validation; its best mean wins.

best, constrained and pareto apply their rule (tuning.study.selection.pick, as the sweep does)
to ONE pool of trials: one TPE sweep, so a difference between them comes from the rule alone,
not from one sweep's sampling luck. The steering of the sampler by the constraint (TPE) or the
two objectives is therefore not part of this measurement. cv5 spends the same number of trials
(each trains 5 models).

Each pick becomes a final model exactly as ``tuning train`` makes it (since 2026-12-07 the pick's
own training replayed with its seed, ``final.refit=false``; results/2026-12-02-selection-quick.txt
was made with the refit on train+validation), evaluated once on the test split, which no search saw. The score is the study metric on test: log loss (classification) or RMSE
(regression), lower is better. Per data set: the median over seeds, the spread (min..max), and
how often each method's test score beat `best`'s on the same seed (ties: the same trial picked).

    python experiments/benchmarks/selection.py --quick   # 3 sets x 2 seeds, 4 trials, 8 epochs: ~10 min on 2 busy cores
    python experiments/benchmarks/selection.py           # 3 sets x 5 seeds, 12 trials, 40 epochs
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import common

from tuning.study.summary import flat_attrs

DATASETS = ("breast_cancer", "wine", "diabetes")
MAX_GAP = 0.05  # log-loss units (classification)
# RMSE on diabetes is in the target's units (its spread is ~77): a gap of 0.05 would be no gap.
GAP_BY_DATA = {"diabetes": 5.0}
METHODS = ("best", "constrained", "pareto", "cv5")


def sweep(data: str, seed: int, n_trials: int, epochs: int, extra: list[str]) -> tuple[dict[str, Any], Any]:
    """One sweep (pruning off); its settings and its study as records."""
    import tuning.commands.sweep

    name = f"{data}-{seed}" + ("-cv" if extra else "")
    settings = common.settings(
        [
            f"data={data}",
            f"seed={seed}",
            f"study.n_trials={n_trials}",
            f"study.name={name}",
            f"training.max_epochs={epochs}",
            "pruner=none",
            "tracking=none",
            *extra,
        ]
    )
    return settings, tuning.commands.sweep.run(settings)


def test_score(settings: dict[str, Any], study: Any, number: int) -> float:
    """Trial ``number``'s final model (as `tuning train` makes it) scored once on test."""
    from tuning.config import parse
    from tuning.final.best import check_best, read_best
    from tuning.final.refit import train_final

    cfg = read_best(Path(settings["paths"]["study_dir"]) / "best.yaml")
    trial = next(t for t in study.trials if t.number == number)
    space = validate_space(settings)
    hp = space.suggest(fixed(trial.params))
    cfg = {**cfg, "search_space": hp.as_config(), "tracking": {"name": "none"}}
    cfg["best"] = {**cfg["best"], **flat_attrs(trial.user_attrs), "trial": number}
    check_best(cfg, "benchmark")
    final = train_final(parse(cfg), hp)
    return float(final.test[study.metric.removeprefix("val_")])


def validate_space(settings: dict[str, Any]) -> Any:
    from tuning.config import validate

    return validate(settings)


def fixed(params: dict[str, Any]) -> Any:
    from tuning.config.space import FixedParams

    return FixedParams(params)


def run_seed(data: str, seed: int, n_trials: int, epochs: int) -> dict[str, dict[str, Any]]:
    """The four picks of one (data set, seed) and their test scores."""
    from tuning.config.selection import Selection
    from tuning.study.selection import gap_of, pick

    gap_limit = GAP_BY_DATA.get(data, MAX_GAP)
    started = time.perf_counter()
    settings, pool = sweep(data, seed, n_trials, epochs, [])
    picks = {
        "best": pick(pool, Selection("best"))[0],
        "constrained": pick(pool, Selection("constrained", gap_limit))[0],
        "pareto": pick(pool, Selection("pareto", gap_limit))[0],
    }
    scores: dict[int, float] = {}
    out = {}
    for method, trial in picks.items():
        if trial.number not in scores:  # the same trial picked twice is refit once
            scores[trial.number] = test_score(settings, pool, trial.number)
        out[method] = {"trial": trial.number, "val": trial.value, "gap": gap_of(trial, pool.metric)}
        out[method]["test"] = scores[trial.number]
    pool_s = time.perf_counter() - started
    cv_settings, cv = sweep(data, seed, n_trials, epochs, ["cv.folds=5"])
    best = cv.best()
    out["cv5"] = {"trial": best.number, "val": best.value, "gap": gap_of(best, cv.metric)}
    out["cv5"]["test"] = test_score(cv_settings, cv, best.number)
    for r in out.values():
        r["metric"] = pool.metric.removeprefix("val_")
    out["best"]["seconds"] = pool_s
    out["cv5"]["seconds"] = time.perf_counter() - started - pool_s
    return out


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=None)
    args = p.parse_args()
    seeds = args.seeds or (2 if args.quick else 5)
    n_trials, epochs = (4, 8) if args.quick else (12, 40)
    common.print_header("selection: test score of each selection's pick", args)
    print(
        f"budget    {n_trials} trials per sweep (pruner=none), training.max_epochs={epochs}, seeds 0..{seeds - 1}"
    )
    print(f"max_gap   {MAX_GAP} (log loss), diabetes {GAP_BY_DATA['diabetes']} (RMSE units)\n", flush=True)
    started = time.perf_counter()
    common.quiet_tuning_logs()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with common.scratch_dir():
        for data in args.datasets.split(","):
            for seed in range(seeds):
                picked = run_seed(data, seed, n_trials, epochs)
                for method, r in picked.items():
                    results.setdefault((data, method), []).append({**r, "seed": seed})
                    print(
                        f"{data:13s} seed {seed} {method:11s} trial {r['trial']:2d}  val {r['val']:.4f}  "
                        f"gap {r['gap']:+.4f}  test {r['metric']} {r['test']:.4f}"
                        + (f"  (sweep {r['seconds']:.0f} s)" if "seconds" in r else ""),
                        flush=True,
                    )
    print()
    rows = []
    for data in args.datasets.split(","):
        by_seed_best = {r["seed"]: r["test"] for r in results[(data, "best")]}
        for method in METHODS:
            runs = results[(data, method)]
            tests = [r["test"] for r in runs]
            wins = sum(r["test"] < by_seed_best[r["seed"]] for r in runs)
            ties = sum(r["test"] == by_seed_best[r["seed"]] for r in runs)
            rows.append(
                [
                    data,
                    method,
                    f"test {runs[0]['metric']}",
                    f"{statistics.median(tests):.4f}",
                    f"{min(tests):.4f}..{max(tests):.4f}",
                    f"{statistics.median(r['gap'] for r in runs):+.4f}",
                    "-" if method == "best" else f"{wins}/{len(runs)} (ties {ties})",
                ]
            )
    header = ["data", "method", "score", "median", "min..max", "median gap of pick", "beats best"]
    print(common.table(rows, header))
    common.print_footer(started)


if __name__ == "__main__":
    main()
