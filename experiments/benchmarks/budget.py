"""What a budget (budget.epochs) costs at each epoch end, beside what pruning already costs there.

A SQLite study holds N finished trials (10 epochs each, like a sweep's); a running trial then
does, per epoch, one of two things, interleaved in one process (report, budget, report, ...) so
load on the machine hits both alike:
- report: Optuna's ``trial.report`` + ``should_prune`` under the default pruner (ASHA), what
  every epoch already pays;
- budget: the loop's budget check, a claim written (``engine.begin``) then the study's trials
  read into records (``engine.trials()``) and summed (``tuning.search.budget.spent``).
Printed: the median milliseconds per epoch of each, with the spread (min-max) over the rounds.

    python experiments/benchmarks/budget.py               # N = 50 and 200, 7 rounds of 20 epochs
    python experiments/benchmarks/budget.py --rounds 11
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

from tuning.search.budget import EPOCHS_ATTR, spent
from tuning.search.engines.optuna_study import trial_summaries

EPOCHS = 20


def make_study(folder: Path, n: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        storage=f"sqlite:///{folder / f'study{n}.db'}", pruner=optuna.pruners.SuccessiveHalvingPruner()
    )
    distributions = {f"p{j}": FloatDistribution(0, 1) for j in range(9)}
    study.add_trials(
        optuna.trial.create_trial(
            value=0.5 + 0.001 * i,
            params=dict.fromkeys(distributions, 0.5),
            distributions=distributions,
            user_attrs={"epochs_trained": 10, "seed": i, "metric": "val_log_loss"},
            intermediate_values={e: 0.6 - 0.01 * e for e in range(10)},
        )
        for i in range(n)
    )
    return study


def report_round(study: optuna.Study) -> float:
    trial = study.ask()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        trial.report(0.6 - 0.01 * epoch, step=epoch)
        trial.should_prune()
    seconds = time.perf_counter() - start
    study.tell(trial, 0.5)
    return seconds / EPOCHS


def budget_round(study: optuna.Study) -> float:
    trial = study.ask()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        trial.set_user_attr(EPOCHS_ATTR, epoch + 2)
        spent(trial_summaries(study))
    seconds = time.perf_counter() - start
    study.tell(trial, 0.5)
    return seconds / EPOCHS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (50, 200):
            study = make_study(Path(tmp), n)
            times: dict[str, list[float]] = {"report": [], "budget": []}
            for _ in range(args.rounds):
                times["report"].append(report_round(study))
                times["budget"].append(budget_round(study))
            line = [f"{n:>4} trials:"]
            for name, values in times.items():
                ms = [v * 1000 for v in values]
                line.append(f"{name} {statistics.median(ms):6.1f} ms/epoch ({min(ms):.1f}-{max(ms):.1f})")
            ratio = statistics.median(times["budget"]) / statistics.median(times["report"])
            print("  ".join(line) + f"  budget/report {ratio:.2f}")


if __name__ == "__main__":
    main()
