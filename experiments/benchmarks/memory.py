"""Memory: resident memory after each of many short trials of one sweep, in one process.

A real ``tuning.commands.sweep.run`` (default search space, TPE, ASHA pruning, MLflow tracking on) of
short trials (2 epochs, 1000 plants rows); the resident set size (RSS) is read after every
finished trial. Target: growth from trial 10 to the last trial under 50 MB, over 1,000 trials.

    python experiments/benchmarks/memory.py --quick         # 40 trials, ~3 min on 2 cores
    python experiments/benchmarks/memory.py                 # 100 trials, ~8 min
    python experiments/benchmarks/memory.py --trials 1000   # the target's length, ~40 min
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import common

LIMIT_MB = 50.0
FROM_TRIAL = 10


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, help="trials in the sweep (default 100, 40 with --quick)")
    args = p.parse_args()
    started = time.perf_counter()
    n_trials = args.trials or (40 if args.quick else 100)
    common.print_header(f"memory: resident memory over {n_trials} trials of one sweep", args)
    rss: list[float] = []
    objects: list[int] = []
    with common.scratch_dir() as tmp:
        import tuning.commands.sweep
        import tuning.search.progress

        common.quiet_tuning_logs()
        observe = tuning.search.progress.Progress.on_trial_end

        def measured(self, study, record):  # type: ignore[no-untyped-def]
            observe(self, study, record)
            rss.append(common.rss_mb())
            objects.append(len(gc.get_objects()))
            n = len(rss)
            if n in (1, FROM_TRIAL) or n % (10 if n_trials <= 200 else 50) == 0:
                print(f"trial {n:4d}: RSS {rss[-1]:7.1f} MB, {objects[-1]} objects tracked by gc", flush=True)

        # The observer the sweep already calls after every trial: here it also reads the RSS.
        tuning.search.progress.Progress.on_trial_end = measured  # type: ignore[method-assign]
        cfg = common.settings(
            [
                "data=plants",
                "data.n_samples=1000",
                "training.max_epochs=2",
                f"study.n_trials={n_trials}",
                f"paths.root={Path(tmp) / 'experiments'}",
            ]
        )
        print(f"before the sweep: RSS {common.rss_mb():.1f} MB (imports only)", flush=True)
        study = common.sweep(cfg)
    states = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    growth = rss[-1] - rss[FROM_TRIAL - 1]
    slope = growth / (len(rss) - FROM_TRIAL) if len(rss) > FROM_TRIAL else float("nan")
    print(f"\n{len(rss)} trials ({states}); RSS after trial 1: {rss[0]:.1f} MB, peak {max(rss):.1f} MB")
    print(
        f"growth from trial {FROM_TRIAL} to trial {len(rss)}: {growth:+.1f} MB "
        f"({slope * 1000:+.0f} kB per trial); target < {LIMIT_MB:.0f} MB: "
        f"{'met' if growth < LIMIT_MB else 'NOT met'}"
    )
    common.print_footer(started)


if __name__ == "__main__":
    main()
