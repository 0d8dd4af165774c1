"""Overhead: the same trials of one fixed MLP, trained four ways, seconds per trial side by side.

1. plain        the loop a user writes: clear_session, keras.Sequential, compile (default
                arguments; the same metrics as tuning), fit(validation_data=...), evaluate.
2. tuning       ``tuning.commands.sweep.run`` on the composed config, as ``tuning sweep`` runs it: Optuna
                study in SQLite, MLflow tracking (tracking=mlflow, the default), early stopping,
                pruning callback, NaN guard, train evaluation and gaps, best.yaml.
3. kerastuner   ``keras_tuner.RandomSearch`` over the same model (one unused dimension, so that
                the search does not stop at its single point).
4. tuning-kept  ``tuning`` with ``training.kept_models=10``: the trials reuse one kept compiled
                model (one structure here) instead of tracing a fresh one: what that saves.

Every arm gets the same compile/fit settings: ``steps_per_execution`` and the Grappler setting of
``conf/training/default.yaml`` (process-wide TensorFlow options a plain loop can set too), so
the ratios measure the framework, not a speed setting. Each method has its own worker process,
warmed up by one untimed one-epoch trial; every repeat asks each worker for N trials of 1 epoch
and N of 5 (order rotated): steady-state seconds per trial, including each sweep's own start
and end (study, MLflow runs, artifacts, best.yaml). No trial is cut: early stopping's patience
(10) exceeds 5 epochs, and tuning runs with ``pruner=none`` (the pruning callback still reports
every epoch; the trials differ only by their seed, and ASHA would stop some after an epoch).

From the two lengths, the **fixed cost per trial** (t = fixed + epochs x per-epoch, solved per
repeat) and, for tuning, where that fixed cost goes (build, fit outside its epochs: tracing the
train and test functions; evaluation; the study and MLflow around the trial).

    python experiments/benchmarks/overhead.py --quick     # 3 trials x 3 repeats, ~6 min on 2 cores
    python experiments/benchmarks/overhead.py             # 10 trials x 5 repeats, ~25 min
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

from tuning.study.summary import flat_attrs

METHODS = ("plain", "tuning", "kerastuner", "tuning-kept")
DATA = ["data=plants"]
LENGTHS = (1, 5)  # epochs per trial: the fixed cost per trial is solved from the two

TRAINING = common.training()
STEPS_PER_EXECUTION = TRAINING.steps_per_execution


def same_tensorflow_settings() -> None:
    """The plain loop and KerasTuner get tuning's process-wide TensorFlow settings (Grappler)."""
    from tuning.model.backend import start_tensorflow

    start_tensorflow(TRAINING)


def plain_model(n_features: int) -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(n_features,)),
            keras.layers.Dense(common.FIXED_MLP["units"], activation="relu"),
            keras.layers.Dense(common.FIXED_MLP["units"], activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
        # The same compiled-call size as tuning's default: the comparison measures the framework,
        # not a speed setting that any plain loop can use too.
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def _timed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, **result}


def fit_args(ds: Any, epochs: int) -> dict[str, Any]:
    """What the plain loop passes to ``model.fit`` and KerasTuner to ``tuner.search``: the same work."""
    return {
        "x": ds.x_train,
        "y": ds.y_train,
        "validation_data": (ds.x_val, ds.y_val),
        "epochs": epochs,
        "batch_size": common.FIXED_MLP["batch_size"],
        "verbose": 0,
    }


def plain(_: dict[str, Any]) -> common.Job:
    same_tensorflow_settings()
    import keras

    ds = common.dataset(DATA)

    def trial(seed: int, epochs: int) -> int:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = plain_model(ds.n_features)
        history = model.fit(**fit_args(ds, epochs))
        model.evaluate(ds.x_val, ds.y_val, verbose=0)
        return len(history.history["loss"])

    trial(0, 1)  # warm-up
    return lambda job: _timed(
        lambda: {"epochs": sum(trial(job["repeat"] * 1000 + i, job["epochs"]) for i in range(job["trials"]))}
    )


RUNNER = "the trial in the runner (the five above)"
PARTS = {  # tuning's fixed cost, timed where it is spent: (module, class or "", function) -> label
    ("tuning.search.trial", "", "fresh_session"): "clear the last trial's session",
    ("tuning.search.trial", "", "new_model"): "build + compile the model (or take the kept one)",
    ("keras", "Model", "fit"): "model.fit (its epochs, and tracing)",
    ("tuning.search.engines.optuna", "OptunaEngine", "report"): "  of which per-epoch reports to the study",
    ("tuning.model.fit", "", "evaluate"): "evaluate train at the restored weights",
    ("tuning.search.runner", "TrialRunner", "train"): RUNNER,
    (
        "tuning.search.engines.optuna",
        "OptunaEngine",
        "ask",
    ): "sampling: engine.ask (sampler + the trial's row)",
    ("tuning.search.engines.optuna", "OptunaEngine", "begin"): "study writes before training (seed, metric)",
    (
        "tuning.search.engines.optuna",
        "OptunaEngine",
        "tell",
    ): "study writes after training (tell + attributes)",
    ("tuning.search.engines.optuna", "OptunaEngine", "summary"): "reading the whole study (summary)",
    ("tuning.tracking.sweep", "MlflowSweepTracker", "on_trial_end"): "MLflow: the trial's child run",
}
# Inside another part (not added to the total again): the reports run inside model.fit.
NESTED = ("  of which per-epoch reports to the study",)


def _time_parts(spent: dict[str, float]) -> None:
    """Wrap each of PARTS so that its seconds add up in ``spent`` (benchmark instrumentation)."""
    import importlib

    for (module, cls, name), label in PARTS.items():
        owner: Any = importlib.import_module(module)
        if cls:
            owner = getattr(owner, cls)
        original = getattr(owner, name)

        def timed(*a: Any, _original: Any = original, _label: str = label, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)


def tuning(params: dict[str, Any]) -> common.Job:
    import tuning.commands.sweep

    common.quiet_tuning_logs()
    base = [*DATA, f"paths.root={Path.cwd() / 'experiments'}", *params.get("overrides", [])]
    # Warm-up: also creates the MLflow store, as the first sweep on a machine does.
    tuning.commands.sweep.run(
        common.settings([*base, *common.fixed_overrides(1), "study.name=warmup", "study.n_trials=1"])
    )
    spent: dict[str, float] = {}
    _time_parts(spent)

    def sweep(job: dict[str, Any]) -> dict[str, Any]:
        cfg = common.settings(
            [
                *base,
                *common.fixed_overrides(job["epochs"]),
                # The trials differ only by their seed; a pruner could stop one after an epoch.
                # pruner=none keeps Optuna's pruning callback (it reports every epoch) but never
                # prunes, so every arm trains the same epochs.
                "pruner=none",
                f"study.name=repeat{job['repeat']}-{job['epochs']}",
                f"study.n_trials={job['trials']}",
            ]
        )
        assert cfg["tracking"]["enabled"], "the overhead is measured with tracking on"
        spent.clear()
        study = common.sweep(cfg)
        return {
            "epochs": sum(flat_attrs(t.user_attrs).get("epochs_trained", 0) for t in study.trials),
            "states": sorted({t.state.name for t in study.trials}),
            "mlflow_store": (Path.cwd() / "experiments" / "mlflow.db").exists(),
            "parts": dict(spent),
        }

    return lambda job: _timed(lambda: sweep(job))


def kerastuner(_: dict[str, Any]) -> common.Job:
    same_tensorflow_settings()
    import keras_tuner as kt

    ds = common.dataset(DATA)

    def build(hp: Any) -> Any:
        # A dimension the model ignores: RandomSearch stops once its space has no new point.
        hp.Int("draw", 0, 2**30)
        return plain_model(ds.n_features)

    def search(n: int, epochs: int, name: str, seed: int) -> dict[str, Any]:
        tuner = kt.RandomSearch(
            build, objective="val_loss", max_trials=n, directory="kt", project_name=name, seed=seed
        )
        tuner.search(**fit_args(ds, epochs))
        done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
        return {"epochs": len(done) * epochs}

    search(1, 1, "warmup", 0)
    return lambda job: _timed(  # a project per repeat and length: KerasTuner resumes a finished one
        lambda: search(job["trials"], job["epochs"], f"repeat{job['repeat']}-{job['epochs']}", job["repeat"])
    )


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    if args.child:
        setups = {"plain": plain, "tuning": tuning, "kerastuner": kerastuner}
        setups["tuning-kept"] = lambda params: tuning({"overrides": ["training.kept_models=10"]})
        common.serve(args, setups)
        return
    started = time.perf_counter()
    n_trials, repeats = (3, 3) if args.quick else (10, 5)
    common.print_header("overhead: seconds per trial of one fixed MLP, four ways", args)
    print(
        f"{n_trials} trials x {repeats} repeats per method and length ({' and '.join(map(str, LENGTHS))} "
        f"epochs); plants (2 features, 1800 train rows), MLP 2x{common.FIXED_MLP['units']} relu, adam 1e-3, "
        f"batch {common.FIXED_MLP['batch_size']}; steps_per_execution {STEPS_PER_EXECUTION} and "
        f"graph_optimizations={TRAINING.graph_optimizations} for every arm; "
        "one worker process per method\n",
        flush=True,
    )
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {e: {m: [] for m in METHODS} for e in LENGTHS}
    with common.workers(__file__, METHODS) as pool:
        for m, w in pool.items():
            print(f"{m:<12} worker ready in {w.setup['setup_s']:.0f} s (imports, data, warm-up trial)")
        for rep in range(repeats):
            for epochs in LENGTHS:
                for method in common.rotated(METHODS, rep):
                    r = pool[method].run({"trials": n_trials, "epochs": epochs, "repeat": rep})
                    runs[epochs][method].append(r)
                    extra = (
                        f", states {r['states']}, MLflow store {r['mlflow_store']}" if "states" in r else ""
                    )
                    print(
                        f"repeat {rep + 1}/{repeats} {epochs} ep {method:<12} {r['wall'] / n_trials:6.2f} s/trial "
                        f"(cpu {r['cpu'] / n_trials:.2f}), {r['epochs']} epochs{extra}",
                        flush=True,
                    )
    for epochs in LENGTHS:
        print(f"\n{epochs}-epoch trials:")
        print_summary(runs[epochs], n_trials)
    print_fixed_cost(runs, n_trials)
    common.print_footer(started)


def print_fixed_cost(runs: dict[int, dict[str, list[dict[str, Any]]]], n_trials: int) -> None:
    """t(e) = fixed + e x per_epoch, solved from each repeat's two lengths; medians over repeats."""
    short, long = LENGTHS
    rows = []
    for m in METHODS:
        pairs = list(zip(runs[short][m], runs[long][m], strict=True))
        per_epoch = [(b["wall"] - a["wall"]) / n_trials / (long - short) for a, b in pairs]
        fixed = [a["wall"] / n_trials - short * pe for (a, _), pe in zip(pairs, per_epoch, strict=True)]
        spread = f"{min(fixed):.2f}–{max(fixed):.2f}"
        rows.append([m, common.median(fixed), spread, common.median(per_epoch)])
    print("\nfixed cost per trial (seconds outside the epochs themselves) and seconds per epoch:")
    print(common.table(rows, ["method", "fixed s/trial", "range", "s/epoch"]))
    for method in ("tuning", "tuning-kept"):  # a fresh model per trial, and kept ones
        print_breakdown(runs, n_trials, method)


def print_breakdown(runs: dict[int, dict[str, list[dict[str, Any]]]], n_trials: int, method: str) -> None:
    """Where ``method``'s seconds go, per trial, at the short length (medians over repeats)."""
    short, long = LENGTHS
    parts = [r["parts"] for r in runs[short][method]]
    walls = [r["wall"] for r in runs[short][method]]
    print(f"\n{method}, {short}-epoch trials: where a trial's seconds go (median over repeats, per trial):")
    rows = [[label, common.median([p.get(label, 0.0) / n_trials for p in parts])] for label in PARTS.values()]
    per_epoch = common.median(
        [
            (b["wall"] - a["wall"]) / n_trials / (long - short)
            for a, b in zip(runs[short][method], runs[long][method], strict=True)
        ]
    )
    fit_label = PARTS[("keras", "Model", "fit")]
    fit = common.median([p.get(fit_label, 0.0) / n_trials for p in parts])
    rows.insert(3, [f"  of which tracing (fit - {short} x {per_epoch:.3f} s/epoch)", fit - short * per_epoch])
    timed = [sum(v for k, v in p.items() if k not in NESTED) - _inner(p) for p in parts]
    around = [(w - t) / n_trials for w, t in zip(walls, timed, strict=True)]
    rows.append(["the rest (loop, progress, sweep start/end, best.yaml)", common.median(around)])
    rows.append(["total", common.median(walls) / n_trials])
    print(common.table(rows, ["part", "s/trial"]))


def _inner(spent: dict[str, float]) -> float:
    """Seconds counted twice in ``spent``: the runner's parts are inside ``RUNNER``."""
    inside = [
        label for label in list(PARTS.values())[: list(PARTS.values()).index(RUNNER)] if label not in NESTED
    ]
    return sum(spent.get(label, 0.0) for label in inside)


def print_summary(runs: dict[str, list[dict[str, Any]]], n_trials: int) -> None:
    per_trial = {m: [r["wall"] / n_trials for r in rs] for m, rs in runs.items()}
    cpu = {m: [r["cpu"] / n_trials for r in rs] for m, rs in runs.items()}
    base, base_cpu = common.median(per_trial["plain"]), common.median(cpu["plain"])
    rows = []
    for m in METHODS:
        # Paired ratios: the same repeat ran every method back to back, under the same load.
        paired = [w / b for w, b in zip(per_trial[m], per_trial["plain"], strict=True)]
        rows.append(
            [
                m,
                common.median(per_trial[m]),
                common.median(per_trial[m]) / base,
                common.median(paired),
                common.median(cpu[m]),
                common.median(cpu[m]) / base_cpu,
                " ".join(f"{v:.2f}" for v in per_trial[m]),
            ]
        )
    print("medians over repeats (ratios to the plain loop; < 1 = faster than plain Keras):")
    print(
        common.table(
            rows,
            ["method", "s/trial", "x plain", "x plain (paired)", "cpu s/trial", "cpu x plain", "each repeat"],
        )
    )


if __name__ == "__main__":
    main()
