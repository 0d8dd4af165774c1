"""Study writes per trial: what a trial's bookkeeping asks of the storage, counted by kind.

Each Optuna storage write is its own transaction (a round trip and a commit on PostgreSQL, an
fsync on SQLite), so their number per trial is what bookkeeping costs with many workers (issue
29's figures: ~120 PostgreSQL commits per trial). This counts them on the project's own code
path: ``tuning sweep`` in rehearsal mode (``training.simulate_epoch_seconds=0``: no model is
trained, each epoch reports a made-up value), on an SQLite study in a scratch folder, with every
write method of Optuna's RDB storage wrapped by a counter. Two sweeps: the default (ASHA prunes
most trials after an epoch or two) and ``pruner=none`` (every trial completes and stores its
measurements). Printed: writes per trial, each kind (user attributes by key) per trial.

    python experiments/benchmarks/writes.py            # 40 trials each
    python experiments/benchmarks/writes.py --trials 100
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import common

WRITES = (
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "set_study_system_attr",
    "record_heartbeat",
)


def counted() -> collections.Counter[str]:
    """Wrap each write method of Optuna's storages (``common.storage_classes``); a write is
    counted once, at the outermost call. Returns the counter they all add to."""
    counts: collections.Counter[str] = collections.Counter()
    local = threading.local()  # each thread's depth (the heartbeat thread writes too)

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth == 0:
                key = kwargs.get("key", args[1] if len(args) > 1 else "")
                counts[f"{name}: {key}" if name.endswith("_attr") else name] += 1
            local.depth = depth + 1
            try:
                return method(self, *args, **kwargs)
            finally:
                local.depth = depth

        return write

    for cls in common.storage_classes():
        for name in WRITES:
            if name in vars(cls):
                setattr(cls, name, wrap(name, vars(cls)[name]))
    return counts


def one_sweep(counts: collections.Counter[str], trials: int, overrides: Sequence[str]) -> dict[str, float]:
    """Writes per trial of one rehearsal sweep of ``trials`` trials in a fresh folder."""
    from tuning.service.sweep import run

    counts.clear()
    with common.scratch_dir():
        cfg = common.settings(
            [
                f"study.n_trials={trials}",
                "training.simulate_epoch_seconds=0",
                "tracking.enabled=false",
                *overrides,
            ]
        )
        summary = run(cfg)
    finished = sum(t.state in ("COMPLETE", "PRUNED") for t in summary.trials)
    return {key: n / finished for key, n in counts.items() if not key.startswith("set_study")}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40)
    args = p.parse_args()
    trials = 10 if args.quick else args.trials
    started = time.perf_counter()
    common.print_header("study writes per trial (rehearsal, SQLite)", args)
    common.quiet_tuning_logs()
    counts = counted()
    for label, overrides in (
        ("default (ASHA)", []),
        ("pruner=none", ["pruner=none", "training.max_epochs=3"]),
    ):
        per_trial = one_sweep(counts, trials, overrides)
        print(f"{label}: {sum(per_trial.values()):.1f} writes per finished trial ({trials} trials)")
        rows = sorted(per_trial.items(), key=lambda kv: (-kv[1], kv[0]))
        print(common.table([(key, f"{n:.2f}") for key, n in rows], ("write", "per trial")))
        print()
    common.print_footer(started)


if __name__ == "__main__":
    main()
