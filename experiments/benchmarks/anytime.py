"""Search efficiency in epochs: best validation score found vs epochs trained, against every peer.

The cost unit is the one the Hyperband and ASHA papers use: **epochs trained**, summed over all
trials of a search (pruned and failed trials included: they were trained). Every search runs until
its epochs reach the largest budget; its trace (trials in the order they ended: epochs, value,
state) gives the **anytime curve**, the best validation score found within each budget. Wall time
is a second axis (seconds per epoch, same fit settings), never the budget.

Methods (one worker process each, interleaved, as in search.py), all over conf/search_space/mlp.yaml
with the loss fixed to the task's standard one (so the arms rank on one metric: ``val_log_loss``
for classification, ``val_rmse`` in the target's units for regression), the same splits, the same
early stopping (that metric, patience 10, best weights restored) and the same fit settings
(``steps_per_execution`` 32, the sampled batch size, TensorFlow's default threads):

- tuning          ``tuning sweep`` as shipped (conf/: TPE + successive-halving pruner, i.e. ASHA), MLflow
                  tracking on; its epochs are the sweep's own ``budget.epochs`` (the trial running
                  when they are spent is pruned there, where the other arms let it finish).
- tuning-median   the same with ``pruner=median``: the default before this benchmark (before/after).
- tuning-hb       the same with ``pruner=hyperband``.
- tuning-random   ``sampler=random pruner=none``: random search, the floor every method should beat.
- optuna          Optuna by hand, as Optuna's Keras example has a user write it: ``TPESampler(seed)``
                  with its defaults, no pruning, the model built and fit in the objective.
- kt-hyperband    ``keras_tuner.Hyperband``, ``max_epochs`` = the space's largest epochs (100),
                  ``factor=3`` (its documented default).
- kt-bayes        ``keras_tuner.BayesianOptimization`` with its defaults.
- dehb            DEHB (``pip install dehb``), the BOHB-style arm: differential evolution inside
                  Hyperband's brackets, by hand through its ask/tell interface; the fidelity is the
                  epochs, ``eta=3``, ``min_fidelity`` 1 and ``max_fidelity`` the space's largest
                  epochs (100), so its rungs are KerasTuner Hyperband's (2/4/12/34/100 epochs); a
                  promoted configuration trains again from scratch (DEHB keeps no weights).

``--variant NAME=KEY=VALUE[,KEY=VALUE]`` adds ``tuning-NAME``: ``tuning sweep`` with those
overrides (a candidate default, measured on the same curves). ``--cap METHOD=EPOCHS`` stops that
method's searches at EPOCHS (its larger budgets show ``n/r``, not run): for a method whose
searches cost far more wall time per epoch than the others. ``--tag`` names the saved files, so
runs split over processes (``--datasets``) do not overwrite each other; ``--report`` takes
several saved runs and merges them.

Test score: each method's pick at the end (its best trial when it stopped; for the peers, the
trial that crossed the largest budget included), evaluated once on the untouched test split:
``tuning``'s best trial replayed with its seed (deterministic ops: the same model), KerasTuner's
``get_best_models``, the by-hand Optuna's and DEHB's kept best model.

    python experiments/benchmarks/anytime.py --quick   # smoke run: plants + diabetes, 1 seed, budgets 50/100 epochs: ~10 min on 2 idle cores
    python experiments/benchmarks/anytime.py           # 3 seeds, budgets 100/300/1000: hours on 2 cores
    python experiments/benchmarks/anytime.py --budgets 100 300 --seeds 1 2 3 --save
    python experiments/benchmarks/anytime.py --report results/A.json results/B.json
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common

METHODS = (
    "tuning",
    "tuning-median",
    "tuning-hb",
    "tuning-random",
    "optuna",
    "kt-hyperband",
    "kt-bayes",
    "dehb",
)
TUNING_ARMS = {  # method -> `tuning sweep` overrides
    "tuning": [],
    "tuning-median": ["pruner=median"],  # the default before this benchmark: before/after
    "tuning-hb": ["pruner=hyperband"],
    "tuning-random": ["sampler=random", "pruner=none"],
}
DATASETS = ("plants", "breast_cancer", "diabetes", "digits")
RESULTS = Path(__file__).resolve().parent / "results"
# The dehb arm's packages are not dependencies of the project (experiments/benchmarks/README.md).
DEHB_MISSING = (
    "the dehb arm needs `pip install --no-deps dehb && pip install ConfigSpace loguru distributed` "
    "(experiments/benchmarks/README.md), or --methods without dehb"
)
EPOCHS_SEEN: list[int] = []  # epochs per KerasTuner fit; module-level: KerasTuner deep-copies callbacks


def internals() -> SimpleNamespace:
    """Every ``tuning`` internal this benchmark uses, imported in one place (the package layout moves)."""
    import tuning.commands.sweep
    from tuning.config.space_config import parse_space
    from tuning.config.tasks import OPTIMIZERS, OUTPUT_ACTIVATION, resolve_loss, resolve_metric
    from tuning.model.build import needs_one_hot, task_metrics
    from tuning.search.trial import fit_trial, targets

    return SimpleNamespace(
        run=tuning.commands.sweep.run,  # the sweep `tuning sweep` runs, without Hydra's command line
        parse_space=parse_space,
        fit_trial=fit_trial,
        targets=targets,
        task_metrics=task_metrics,
        needs_one_hot=needs_one_hot,
        OPTIMIZERS=OPTIMIZERS,
        OUTPUT_ACTIVATION=OUTPUT_ACTIVATION,
        resolve_loss=resolve_loss,
        resolve_metric=resolve_metric,
    )


def _data_overrides(job: dict[str, Any]) -> list[str]:
    return [f"data={job['data']}", f"seed={job['seed']}"]


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


# --- tuning (any overrides) ------------------------------------------------------------------


def tuning_arm(overrides: list[str]) -> common.Job:
    from optuna.trial import FixedTrial

    T = internals()
    common.quiet_tuning_logs()
    root = Path.cwd() / "experiments"
    # Warm-up outside every budget: TensorFlow's first model, the MLflow store's tables.
    T.run(common.settings(["data=breast_cancer", "study.name=warmup", "study.n_trials=1",
                           "training.max_epochs=1", f"paths.root={root}"]))  # fmt: skip

    def search(job: dict[str, Any]) -> dict[str, Any]:
        # The search's epochs are the sweep's own budget (budget.epochs, what a user sets): no
        # trial starts once they are spent, and the running one is pruned at the budget.
        cfg = common.settings(
            [
                *_data_overrides(job),
                "search_space.loss=auto",
                f"study.name={job['data']}-{job['seed']}-{job['n']}",
                "study.n_trials=null",
                f"budget.epochs={job['budget']}",
                f"paths.root={root}",
                *overrides,
            ]
        )
        start = time.perf_counter()
        study = T.run(cfg)
        used = time.perf_counter() - start
        # One worker: trials end in the order of their numbers. A pruned trial's value is its
        # last reported epoch's (Optuna's), as KerasTuner's short trials count theirs.
        trace = [
            [int(t.user_attrs.get("epochs_trained") or 0), _finite(t.value), t.state]
            for t in sorted(study.trials, key=lambda t: t.number)
            if t.state in ("COMPLETE", "PRUNED", "FAIL")
        ]
        # The pick, replayed with its seed (deterministic ops: the very model that won), on test.
        best = study.best()
        if best is None:  # every trial pruned: the first one ran into the budget
            return {"used": used, "trace": trace, "test": None}
        dataset = common.dataset(_data_overrides(job))
        space = T.parse_space(cfg["search_space"], dataset.task)
        hp = space.suggest(FixedTrial(best.params))
        model, result = T.fit_trial(hp, dataset, common.training(cfg), seed=int(best.user_attrs["seed"]))
        name = T.resolve_metric("auto", dataset.task).removeprefix("val_")
        test = model.evaluate(
            dataset.x_test, T.targets(dataset.y_test, hp, dataset), verbose=0, return_dict=True
        )
        return {
            "used": used,
            "trace": trace,
            "test": float(test[name]),
            "replay_matches": abs(float(result.val[name]) - float(best.value)) < 1e-6,
        }

    return search


# --- what a user writes by hand: the model, Optuna's objective, KerasTuner's hypermodel --------


def _space() -> dict[str, Any]:
    """conf/search_space/mlp.yaml as tuning composes it (the loss is fixed: the task's standard one)."""
    return common.settings([])["search_space"]


def _user_model(T: SimpleNamespace, p: dict[str, Any], dataset: Any) -> Any:
    """The MLP a user writes: Dense layers, Dropout after each when above 0, the task's output and
    loss, Keras' default compile arguments except ``steps_per_execution`` (tuning's setting, given
    to every arm) and the selection metric compiled in (in the target's units for regression)."""
    import keras

    layers = [keras.Input(shape=(dataset.n_features,))]
    for i in range(p["n_layers"]):
        layers.append(keras.layers.Dense(p[f"units_{i}"], activation=p["activation"]))
        if p["dropout"] > 0:
            layers.append(keras.layers.Dropout(p["dropout"]))
    n_out = dataset.n_classes if dataset.task == "multiclass" else 1
    layers.append(keras.layers.Dense(n_out, activation=T.OUTPUT_ACTIVATION[dataset.task]))
    model = keras.Sequential(layers)
    optimizer = getattr(keras.optimizers, T.OPTIMIZERS[p["optimizer"]])
    # Multiclass: the standard loss is categorical (one-hot targets, _user_data), so are the metrics.
    one_hot = T.needs_one_hot("auto", dataset.task)
    model.compile(
        optimizer=optimizer(learning_rate=p["learning_rate"]),
        loss=T.resolve_loss("auto", dataset.task),
        metrics=T.task_metrics(dataset.task, one_hot=one_hot, target_units=dataset.target_units),
        steps_per_execution=32,
    )
    return model


def _user_data(T: SimpleNamespace, dataset: Any) -> dict[str, Any]:
    """The arrays tuning's trials train on (standardized regression targets, class indices)."""
    auto = SimpleNamespace(loss="auto", builder=None)  # the built-in MLP with the task's loss
    return {
        "x": dataset.x_train,
        "y": T.targets(dataset.y_train, auto, dataset),
        "validation_data": (dataset.x_val, T.targets(dataset.y_val, auto, dataset)),
        "test": (dataset.x_test, T.targets(dataset.y_test, auto, dataset)),
    }


def _early_stopping(metric: str) -> Any:
    import keras

    patience = common.settings([])["training"]["early_stopping"]["patience"]
    return keras.callbacks.EarlyStopping(monitor=metric, patience=patience, restore_best_weights=True)


def _warm_up(T: SimpleNamespace) -> None:
    """Warm-up outside every budget: TensorFlow's first model in this process."""
    warm = common.dataset(["data=breast_cancer"])
    wd = _user_data(T, warm)
    p = {
        "n_layers": 1,
        "units_0": 8,
        "activation": "relu",
        "dropout": 0.0,
        "learning_rate": 1e-3,
        "optimizer": "adam",
    }
    _user_model(T, p, warm).fit(wd["x"], wd["y"], validation_data=wd["validation_data"], epochs=1, verbose=0)


class _ByHand:
    """One search written by hand (Optuna's objective, DEHB's loop): each model fit as a user
    would, its epochs and score traced, and each new best scored once on the test split."""

    def __init__(self, T: SimpleNamespace, job: dict[str, Any]) -> None:
        self.T, self.seed = T, job["seed"]
        self.dataset = common.dataset(_data_overrides(job))
        self.data = _user_data(T, self.dataset)
        self.metric = T.resolve_metric("auto", self.dataset.task)
        self.trace: list[list[Any]] = []
        self.best: dict[str, Any] = {"value": math.inf, "test": None}

    def epochs(self) -> int:
        return sum(t[0] for t in self.trace)

    def fit(self, p: dict[str, Any], epochs: int) -> tuple[int, float | None]:
        """Train the model of ``p`` for up to ``epochs`` (early stopping may end it sooner): the
        epochs it trained and its best validation score (None for a non-finite loss)."""
        import keras

        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed + len(self.trace))
        model = _user_model(self.T, p, self.dataset)
        data = self.data
        history = model.fit(
            data["x"], data["y"], validation_data=data["validation_data"], epochs=epochs,
            batch_size=p["batch_size"], callbacks=[_early_stopping(self.metric)], verbose=0,
        ).history  # fmt: skip
        trained = len(history["loss"])
        score = _finite(min(history[self.metric])) if all(map(math.isfinite, history["loss"])) else None
        self.trace.append([trained, score, "COMPLETE" if score is not None else "FAIL"])
        if score is not None and score < self.best["value"]:  # the pick so far, scored on test once
            self.best["value"] = score
            test = model.evaluate(*data["test"], verbose=0, return_dict=True)
            self.best["test"] = float(test[self.metric.removeprefix("val_")])
        return trained, score


def optuna_arm(params: dict[str, Any]) -> common.Job:
    import optuna

    T = internals()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = _space()

    def suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
        if spec["type"] == "categorical":
            return trial.suggest_categorical(name, list(spec["choices"]))
        step = None if spec.get("log") else spec.get("step")
        if spec["type"] == "int":
            return trial.suggest_int(
                name, spec["low"], spec["high"], step=step or 1, log=bool(spec.get("log"))
            )
        return trial.suggest_float(name, spec["low"], spec["high"], step=step, log=bool(spec.get("log")))

    def search(job: dict[str, Any]) -> dict[str, Any]:
        run = _ByHand(T, job)

        def objective(trial: Any) -> float:
            p = {k: suggest(trial, k, space[k]) for k in
                 ("n_layers", "activation", "dropout", "learning_rate", "batch_size", "epochs", "optimizer")}  # fmt: skip
            for i in range(p["n_layers"]):
                p[f"units_{i}"] = suggest(trial, f"units_{i}", space["units"])
            _, value = run.fit(p, p["epochs"])  # the seed: job's + trial number, as before
            if run.epochs() >= job["budget"]:
                trial.study.stop()
            return value if value is not None else float("nan")

        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=job["seed"])
        )
        start = time.perf_counter()
        study.optimize(objective, n_trials=100000)
        return {"used": time.perf_counter() - start, "trace": run.trace, "test": run.best["test"]}

    return search


def _keras_tuner_arm(kind: str) -> common.Job:
    import keras
    import keras_tuner as kt

    T = internals()
    space = _space()

    dim = common.kt_dimension

    class CountEpochs(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            EPOCHS_SEEN.append(0)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            EPOCHS_SEEN[-1] += 1

    def hypermodel(dataset: Any) -> Any:
        class MLP(kt.HyperModel):
            def build(self, hp: Any) -> Any:
                p = {
                    k: dim(hp, k, space[k])
                    for k in ("n_layers", "activation", "dropout", "learning_rate", "optimizer")
                }
                for i in range(p["n_layers"]):
                    p[f"units_{i}"] = dim(hp, f"units_{i}", space["units"])
                return _user_model(T, p, dataset)

            def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
                if "epochs" not in kwargs:  # Hyperband decides the epochs itself
                    kwargs["epochs"] = dim(hp, "epochs", space["epochs"])
                return model.fit(*args, batch_size=dim(hp, "batch_size", space["batch_size"]), **kwargs)

        return MLP()

    def search(job: dict[str, Any]) -> dict[str, Any]:
        dataset = common.dataset(_data_overrides(job))
        data = _user_data(T, dataset)
        metric = T.resolve_metric("auto", dataset.task)
        keras.utils.set_random_seed(job["seed"])
        shared = {
            "objective": kt.Objective(metric, direction="min"),
            "directory": "kt",
            "project_name": f"{kind}-{job['data']}-{job['seed']}-{job['n']}",
            "seed": job["seed"],
        }
        if kind == "hyperband":
            tuner = kt.Hyperband(hypermodel(dataset), max_epochs=space["epochs"]["high"], factor=3, **shared)
        else:
            tuner = kt.BayesianOptimization(hypermodel(dataset), max_trials=100000, **shared)
        populate = tuner.oracle.populate_space

        def within_budget(trial_id: str) -> dict[str, Any]:
            # No new trial once the epochs reach the budget (the running one finishes), as for tuning.
            if sum(EPOCHS_SEEN) >= job["budget"]:
                return {"status": "STOPPED", "values": None}
            return populate(trial_id)

        tuner.oracle.populate_space = within_budget
        EPOCHS_SEEN.clear()
        start = time.perf_counter()
        tuner.search(
            data["x"], data["y"], validation_data=data["validation_data"],
            callbacks=[_early_stopping(metric), CountEpochs()], verbose=0,
        )  # fmt: skip
        used = time.perf_counter() - start
        # One fit per trial, in the order the oracle made them (its ids count up; one at a time).
        ordered = [t for t in sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
                   if t.status in ("COMPLETED", "FAILED", "INVALID")]  # fmt: skip
        trace = []
        for t, epochs in zip(ordered, EPOCHS_SEEN, strict=False):
            value = _finite(t.score) if t.status == "COMPLETED" else None
            trace.append([epochs, value, "COMPLETE" if value is not None else t.status])
        model = tuner.get_best_models(1)[0]
        test = model.evaluate(*data["test"], verbose=0, return_dict=True)
        return {"used": used, "trace": trace, "test": float(test[metric.removeprefix("val_")])}

    _warm_up(T)
    return search


def dehb_arm(params: dict[str, Any]) -> common.Job:
    """DEHB by hand (BOHB's successor: differential evolution in place of BOHB's TPE), through
    its ask/tell interface, so that the loop stops as the others do: no new trial once the
    epochs reach the budget, the running one finishes."""
    try:
        import ConfigSpace as CS
        from dehb import DEHB
        from loguru import logger
    except ImportError:
        raise SystemExit(DEHB_MISSING) from None

    T = internals()
    space = _space()
    names = ("n_layers", "activation", "dropout", "learning_rate", "batch_size", "optimizer")
    units = [f"units_{i}" for i in range(int(space["n_layers"]["high"]))]  # one per possible layer
    specs = {**{k: space[k] for k in names}, **dict.fromkeys(units, space["units"])}
    # The epochs are the fidelity. DEHB's rungs are max_fidelity / eta**k, k = 0 .. n-1, with n the
    # rungs that fit above min_fidelity; KerasTuner's Hyperband (factor 3, min_epochs 1) has
    # the rungs max_epochs / 3**k >= 1 and trains ceil() of them. min_fidelity 1, KerasTuner's own
    # floor, gives DEHB the same 5 rungs, 100/81 .. 100 (any value in (100/243, 100/81] would),
    # and a trial trains ceil(fidelity) epochs, as KerasTuner does: 2, 4, 12, 34, 100 (round()
    # would give 1, 4, 11, 33, 100). Both start with the most aggressive bracket (from 2 epochs).
    max_epochs, eta = int(space["epochs"]["high"]), 3
    # A failed trial (a non-finite loss) is told the worst finite fitness: DEHB reads inf as
    # "not evaluated yet" when it picks configurations to promote, and NaN breaks its sorting.
    failed = sys.float_info.max

    def step(spec: dict[str, Any]) -> Any:
        return None if spec.get("log") or spec["type"] == "categorical" else spec.get("step")

    def dimension(name: str, spec: dict[str, Any]) -> Any:
        """One conf/search_space dimension as a ConfigSpace hyperparameter, as optuna_arm's suggest
        and common.kt_dimension read it (a step on a log scale is ignored)."""
        if spec["type"] == "categorical":
            return CS.CategoricalHyperparameter(name, list(spec["choices"]))
        if step(spec):  # ConfigSpace 1.x has no step: the grid's index, low + index * step
            return CS.UniformIntegerHyperparameter(name, 0, round((spec["high"] - spec["low"]) / step(spec)))
        kind = CS.UniformIntegerHyperparameter if spec["type"] == "int" else CS.UniformFloatHyperparameter
        return kind(name, spec["low"], spec["high"], log=bool(spec.get("log")))

    def value(config: Any, name: str, spec: dict[str, Any]) -> Any:
        v = config[name]
        if spec["type"] == "categorical":  # the choice as the space writes it (not a NumPy scalar)
            choices = list(spec["choices"])
            return choices[choices.index(v)]
        if step(spec):
            v = spec["low"] + v * step(spec)
        return int(round(v)) if spec["type"] == "int" else float(v)

    def search(job: dict[str, Any]) -> dict[str, Any]:
        run = _ByHand(T, job)
        # No conditions: every units_i is sampled and those past n_layers are ignored, as in
        # KerasTuner's arm (DE evolves fixed-length vectors; DEHB would impute inactive ones).
        cs = CS.ConfigurationSpace(seed=job["seed"])
        cs.add([dimension(k, spec) for k, spec in specs.items()])
        # DEHB writes its log (and, with save_freq "end", its state only in run(), unused here)
        # to output_path: a temporary folder. n_workers=1: no Dask, everything in this process.
        with tempfile.TemporaryDirectory(prefix="dehb-") as out:
            dehb = DEHB(cs=cs, min_fidelity=1, max_fidelity=max_epochs, eta=eta, n_workers=1,
                        seed=job["seed"], output_path=out, save_freq="end", log_level="ERROR")  # fmt: skip
            logger.remove()  # DEHB's loguru handlers (stdout, the log file): the output stays ours
            start = time.perf_counter()
            while run.epochs() < job["budget"]:
                asked = dehb.ask()
                p = {k: value(asked["config"], k, spec) for k, spec in specs.items()}
                trained, score = run.fit(p, max(1, math.ceil(asked["fidelity"] - 1e-9)))
                dehb.tell(asked, {"fitness": failed if score is None else score, "cost": trained})
            used = time.perf_counter() - start
        return {"used": used, "trace": run.trace, "test": run.best["test"]}

    _warm_up(T)  # as the tuning and KerasTuner arms do
    return search


SETUPS = {
    **{m: (lambda params, m=m: tuning_arm(TUNING_ARMS[m])) for m in TUNING_ARMS},
    "optuna": optuna_arm,
    "kt-hyperband": lambda params: _keras_tuner_arm("hyperband"),
    "kt-bayes": lambda params: _keras_tuner_arm("bayes"),
    "dehb": dehb_arm,
}


# --- reading the traces ------------------------------------------------------------------------


def best_within(trace: list[list[Any]], budget: float) -> float:
    """The best value of the trials that had ended when the search's epochs were at most ``budget``."""
    spent, best = 0, math.inf
    for epochs, value, _ in trace:
        spent += epochs
        if spent > budget:
            break
        if value is not None:
            best = min(best, value)
    return best


def epochs_to_reach(trace: list[list[Any]], target: float) -> int | None:
    """Epochs a search had trained when one of its trials first scored ``target`` or better."""
    spent = 0
    for epochs, value, _ in trace:
        spent += epochs
        if value is not None and value <= target + 1e-12:
            return spent
    return None


def counts(trace: list[list[Any]]) -> dict[str, int]:
    """complete / pruned / failed, counted from the trials."""
    out = {"complete": 0, "pruned": 0, "failed": 0}
    for _, _value, state in trace:
        key = {"COMPLETE": "complete", "PRUNED": "pruned"}.get(state, "failed")
        out[key] += 1
    return out


def ran(r: dict[str, Any], budget: int) -> bool:
    """Whether the search ``r`` was run up to ``budget`` epochs (see ``--cap``)."""
    return budget <= r.get("budget", budget)


def spread(values: list[float]) -> str:
    """median [min–max] of finite values; 'none' where a seed had no finished trial in the budget."""
    if not values:
        return "n/r"
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values) / 2:  # the median is a seed with nothing found
        return "none"
    ordered = sorted(values)
    med = common.median(ordered)
    if len(values) == 1:
        return f"{med:.4f}"
    hi = "none" if not math.isfinite(ordered[-1]) else f"{ordered[-1]:.4f}"
    return f"{med:.4f} [{ordered[0]:.4f}–{hi}]"


def report(
    results: dict[str, dict[str, list[dict[str, Any]]]], budgets: list[int], metric_names: dict
) -> None:
    for data, by_method in results.items():
        methods = list(by_method)
        n_seeds = len(next(iter(by_method.values())))
        print(f"\n{data} ({metric_names[data]}, lower is better; median [min–max] over {n_seeds} seed(s)):")
        rows = []
        for m in methods:
            rs = by_method[m]
            row: list[Any] = [m]
            for b in budgets:
                row.append(spread([best_within(r["trace"], b) for r in rs if ran(r, b)]))
            row.append(spread([r["test"] if r["test"] is not None else math.inf for r in rs]))
            c = [counts(r["trace"]) for r in rs]
            row.append("/".join(str(sum(x[k] for x in c)) for k in ("complete", "pruned", "failed")))
            row.append(common.median([sum(t[0] for t in r["trace"]) for r in rs]))
            row.append(common.median([r["used"] / max(1, sum(t[0] for t in r["trace"])) for r in rs]))
            rows.append(row)
        header = [
            "method",
            *(f"best val @{b} ep" for b in budgets),
            "test of pick",
            "trials c/p/f",
            "epochs",
            "s/epoch",
        ]
        print(common.table(rows, header))
        final = budgets[-1]
        for us in (m for m in methods if m.startswith("tuning")):
            wins = dict.fromkeys(budgets, 0)
            compared = dict.fromkeys(budgets, 0)  # pairs of seeds where both searches ran to b
            lines = []
            for other in (m for m in methods if m != us):
                per_seed = []
                for mine, theirs in zip(by_method[us], by_method[other], strict=True):
                    top = theirs.get("budget", final)  # a capped peer: its best at its own budget
                    target = best_within(theirs["trace"], top)
                    spent = min(top, sum(t[0] for t in theirs["trace"]))
                    need = epochs_to_reach(mine["trace"], target) if math.isfinite(target) else None
                    per_seed.append(f"{'never' if need is None else need}/{spent}")
                    for b in budgets:  # a win needs a model: nothing found within b is no win
                        if not (ran(mine, b) and ran(theirs, b)):
                            continue
                        compared[b] += 1
                        ours = best_within(mine["trace"], b)
                        wins[b] += math.isfinite(ours) and ours <= best_within(theirs["trace"], b) + 1e-12
                lines.append(
                    f"  vs {other:<13} epochs {us} needed to reach its final best / its epochs: {', '.join(per_seed)}"
                )
            print(
                f"{us}: at least as good as the peer in "
                + ", ".join(f"{wins[b]}/{compared[b]} @{b}" for b in budgets)
            )
            print("\n".join(lines))


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], budget: int, path: Path, title: str) -> None:
    """Anytime curves, one panel per data set: the median over seeds of the best value so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    grid = list(range(5, budget + 1, 5))
    for ax, (data, by_method) in zip(axes[0], results.items(), strict=True):
        for m, rs in by_method.items():
            ys = [
                common.median([best_within(r["trace"], b) for r in rs]) if ran(rs[0], b) else math.inf
                for b in grid
            ]
            pts = [(b, y) for b, y in zip(grid, ys, strict=True) if math.isfinite(y)]
            if pts:
                ax.step(*zip(*pts, strict=True), where="post", label=m, lw=2 if m == "tuning" else 1.2)
        ax.set_title(data)
        ax.set_xlabel("epochs trained (all trials of the search)")
        ax.set_ylabel("best validation score so far (median over seeds)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or "=" not in overrides:
        raise SystemExit(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]")
    return f"tuning-{name}", overrides.split(",")


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", help=f"default: {' '.join(METHODS)} (and the variants)")
    p.add_argument(
        "--datasets", nargs="+", help=f"default: {' '.join(DATASETS)} (plants diabetes with --quick)"
    )
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3 (1 with --quick)")
    p.add_argument(
        "--budgets", nargs="+", type=int, help="epochs; default 100 300 1000 (50 100 with --quick)"
    )
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]")
    p.add_argument(
        "--save", action="store_true", help="keep the raw traces (after every search) and the PNG in results/"
    )
    p.add_argument("--cap", action="append", default=[], metavar="METHOD=EPOCHS")
    p.add_argument("--tag", default="", help="added to the saved files' names")
    p.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="print the tables (and the PNG) again from saved runs' traces",
    )
    args = p.parse_args()
    if args.report:
        runs = [json.loads(Path(f).read_text()) for f in args.report]
        saved = runs[0]
        budgets = saved["budgets"]
        by_seed: dict[str, dict[str, dict[int, Any]]] = {}
        for run in runs:  # runs split by data set (--datasets), by seeds, or a run repeated
            saved["metric_names"].update(run["metric_names"])
            for d, by in run["results"].items():
                for m, rs in by.items():  # one search per (data set, method, seed): a later file's wins
                    by_seed.setdefault(d, {}).setdefault(m, {}).update({r["seed"]: r for r in rs})
        # A stopped run: per data set, the seeds every method finished.
        done = {}
        for d, by in by_seed.items():
            seeds = sorted(set.intersection(*(set(rs) for rs in by.values())))
            order = sorted(by, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))
            if seeds:
                done[d] = {m: [by[m][k] for k in seeds] for m in order}
        report(done, budgets, saved["metric_names"])
        shown = sorted({r["seed"] for by in done.values() for rs in by.values() for r in rs})
        title = saved["title"].split("; seeds")[0] + f"; seeds {shown} (finished by every method)"
        plot(done, budgets[-1], Path(args.report[0]).with_suffix(".png"), title)
        return
    variants = dict(_variant(v) for v in args.variant)
    caps = {m: int(e) for m, _, e in (c.partition("=") for c in args.cap)}
    if args.child:
        setups = dict(SETUPS)
        for name, overrides in json.loads(args.params).get("variants", {}).items():
            setups[name] = lambda params, o=overrides: tuning_arm(o)
        common.serve(args, setups)
        return
    started = time.perf_counter()
    seeds = tuple(args.seeds or ((1,) if args.quick else (1, 2, 3)))
    args.datasets = args.datasets or (["plants", "diabetes"] if args.quick else list(DATASETS))
    budgets = sorted(args.budgets or ([50, 100] if args.quick else [100, 300, 1000]))
    methods = [*(args.methods or METHODS), *variants]
    if "dehb" in methods and not all(importlib.util.find_spec(m) for m in ("dehb", "ConfigSpace", "loguru")):
        raise SystemExit(DEHB_MISSING)  # at once, not after the other arms' searches
    title = "search efficiency in epochs: best validation score vs epochs trained"
    if caps:
        title += " (" + ", ".join(f"{m} capped at {e} epochs" for m, e in caps.items()) + ")"
    common.print_header(title + (" (SMOKE RUN: 1 seed, small budgets)" if args.quick else ""), args)
    print(
        f"data sets {', '.join(args.datasets)}; seeds {list(seeds)}; budgets {budgets} epochs per search; "
        f"methods {methods}" + "".join(f"; {n}: {o}" for n, o in variants.items()) + "\n",
        flush=True,
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    metric_names = {}
    for data in args.datasets:
        task = common.dataset([f"data={data}"]).task
        metric_names[data] = "val_rmse" if task == "regression" else "val_log_loss"
    stamp = datetime.date.today().isoformat()
    saved = (
        RESULTS / f"{stamp}-anytime{'-quick' if args.quick else ''}{'-' + args.tag if args.tag else ''}.json"
    )
    curve_title = f"{title}; {common.cpu_model()}, {common.cores()} cores; seeds {list(seeds)}"
    with common.workers(__file__, methods, {"variants": variants}) as pool:
        n = 0
        # Seed by seed, every data set in turn: a run stopped early has covered every data set.
        for seed in seeds:
            for data in args.datasets:
                for method in common.rotated(methods, n):
                    job = {
                        "data": data,
                        "seed": seed,
                        "budget": min(budgets[-1], caps.get(method, budgets[-1])),
                        "n": n,
                    }
                    r = {**pool[method].run(job), "budget": job["budget"], "seed": seed}
                    results.setdefault(data, {}).setdefault(method, []).append(r)
                    c = counts(r["trace"])
                    epochs = sum(t[0] for t in r["trace"])
                    print(
                        f"{data:<13} seed {seed} {method:<14} {len(r['trace']):3d} trials "
                        f"({c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed), {epochs:4d} epochs "
                        f"in {r['used']:6.1f} s; best {best_within(r['trace'], budgets[-1]):.4f}, test {r['test']}"
                        + ("" if r.get("replay_matches", True) else " (replay differs!)"),
                        flush=True,
                    )
                    if args.save:  # after every search: a stopped run still has what it measured
                        RESULTS.mkdir(exist_ok=True)
                        saved.write_text(json.dumps({"budgets": budgets, "seeds": seeds, "title": curve_title,
                                                     "metric_names": metric_names, "results": results}))  # fmt: skip
                n += 1
    # Orders rows as asked.
    results = {d: {m: results[d][m] for m in methods} for d in args.datasets}
    report(results, budgets, metric_names)
    print(
        "\n'best val @B ep': the best validation score among the trials that had ended when the search "
        "had trained B epochs in all (median [min–max] over seeds); 'test of pick': the test score of the "
        "search's best trial at the end; 'epochs to reach': epochs the tuning arm had trained when it "
        "first matched the peer's final best, next to the epochs the peer trained for it."
    )
    common.print_footer(started)
    if args.save:
        plot(results, budgets[-1], saved.with_suffix(".png"), curve_title)
        print(f"saved {saved} and {saved.with_suffix('.png').name} (keep this output beside them as .txt)")


if __name__ == "__main__":
    main()
