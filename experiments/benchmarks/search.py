"""Search efficiency: tuning vs KerasTuner over the same space, with the same wall-clock budget.

Methods, each in its own worker process, given the same budget per (data set, seed):

- tuning      ``tuning.commands.sweep.run``: TPE, median pruning, early stopping (patience 10), MLflow on;
              ``study.timeout`` = the budget.
- hyperband   ``keras_tuner.Hyperband`` (max_epochs = the space's top, factor 3).
- random      ``keras_tuner.RandomSearch`` (epochs sampled like tuning's).

Space: conf/search_space/mlp.yaml mapped to KerasTuner HyperParameters (n_layers, units_i
log-scaled, activation, dropout, learning_rate log-scaled, batch_size, epochs, optimizer); the
loss is fixed to the task's standard one: the objective is val_loss, and losses of different
kinds are not comparable. The KerasTuner models are built as a user writes them (Keras' default
compile arguments) and get the same EarlyStopping(val_loss, patience=10). A budget stops new
trials from starting (Optuna's timeout; a KerasTuner oracle answering STOPPED): the running
trial finishes, so the time used is printed too. The data splits are the same for all methods
(same seed). Test score: each method's best model (tuning: its best trial replayed with its
seed, bit-identical; KerasTuner: get_best_models) evaluated once on the held-out test split.

    python experiments/benchmarks/search.py --quick   # 1 seed, 20 s budgets, epochs capped at 20: ~4 min
    python experiments/benchmarks/search.py           # 3 seeds, 120 s budgets: ~45 min
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import common

from tuning.study.summary import flat_attrs

METHODS = ("tuning", "hyperband", "random")
DATASETS = ("breast_cancer", "plants")
EPOCHS_SEEN: list[int] = []  # epochs per fit; module-level: KerasTuner deep-copies callbacks


def _space() -> dict[str, Any]:
    """conf/search_space/mlp.yaml, as tuning composes it."""
    return common.settings([])["search_space"]


def _data_overrides(job: dict[str, Any]) -> list[str]:
    return [f"data={job['data']}", f"seed={job['seed']}"]


# --- tuning ------------------------------------------------------------------------------------


def tuning(params: dict[str, Any]) -> common.Job:
    import tuning.commands.sweep
    from tuning.config.space_config import parse_space
    from tuning.search.trial import fit_trial

    common.quiet_tuning_logs()
    root = Path.cwd() / "experiments"
    # Warm-up outside every budget: TensorFlow's first model, the MLflow store's tables.
    tuning.commands.sweep.run(
        common.settings(
            [
                "data=breast_cancer",
                "study.name=warmup",
                "study.n_trials=1",
                "training.max_epochs=1",
                f"paths.root={root}",
            ]
        )
    )

    def search(job: dict[str, Any]) -> dict[str, Any]:
        overrides = [
            *_data_overrides(job),
            "search_space.loss=auto",
            f"study.name={job['data']}-{job['seed']}",
            "study.n_trials=100000",
            f"study.timeout={job['budget']}",
            f"paths.root={root}",
            *params.get("overrides", []),
        ]
        if job.get("max_epochs"):
            overrides.append(f"training.max_epochs={job['max_epochs']}")
        cfg = common.settings(overrides)
        start = time.perf_counter()
        study = common.sweep(cfg)
        used = time.perf_counter() - start
        finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        best = study.best_trial
        # Anytime trace in completion order: (epochs trained so far, that trial's value or None).
        done = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.datetime_complete)
        trace = [
            [
                int(flat_attrs(t.user_attrs).get("epochs_trained", 0)),
                t.value if t.state.name == "COMPLETE" else None,
            ]
            for t in done
        ]
        # Replay the best trial (same seed, deterministic ops): the very model that won.
        dataset = common.dataset(_data_overrides(job))
        space = parse_space(cfg["search_space"], dataset.task)
        from optuna.trial import FixedTrial

        hp = space.suggest(FixedTrial(best.params))
        model, result = fit_trial(hp, dataset, common.training(cfg), seed=int(best.user_attrs["seed"]))
        test = model.evaluate(dataset.x_test, dataset.y_test, verbose=0, return_dict=True)
        return {
            "used": used,
            "trials": len(finished),
            "pruned": sum(t.state.name == "PRUNED" for t in finished),
            "epochs": sum(int(flat_attrs(t.user_attrs).get("epochs_trained", 0)) for t in finished),
            "best_val": float(best.value),
            "replayed_val": float(result.val["loss"]),
            "test_loss": float(test["loss"]),
            "test_acc": float(test["accuracy"]),
            "trace": trace,
        }

    return search


# --- KerasTuner -------------------------------------------------------------------------------


def _hypermodel(space: dict[str, Any], dataset: Any, max_epochs: int | None) -> Any:
    import keras
    import keras_tuner as kt

    from tuning.config.tasks import OPTIMIZERS, OUTPUT_ACTIVATION, resolve_loss
    from tuning.model.build import task_metrics

    dim = common.kt_dimension

    class MLP(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            activation = dim(hp, "activation", space["activation"])
            dropout = dim(hp, "dropout", space["dropout"])
            layers = [keras.Input(shape=(dataset.n_features,))]
            for i in range(dim(hp, "n_layers", space["n_layers"])):
                layers.append(
                    keras.layers.Dense(dim(hp, f"units_{i}", space["units"]), activation=activation)
                )
                if dropout > 0:
                    layers.append(keras.layers.Dropout(dropout))
            n_out = dataset.n_classes if dataset.task == "multiclass" else 1
            layers.append(keras.layers.Dense(n_out, activation=OUTPUT_ACTIVATION[dataset.task]))
            model = keras.Sequential(layers)
            optimizer = getattr(keras.optimizers, OPTIMIZERS[dim(hp, "optimizer", space["optimizer"])])
            model.compile(
                optimizer=optimizer(learning_rate=dim(hp, "learning_rate", space["learning_rate"])),
                loss=resolve_loss("auto", dataset.task),
                metrics=task_metrics(dataset.task),
            )
            return model

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            if "epochs" not in kwargs:  # Hyperband decides the epochs itself
                epochs = dim(hp, "epochs", space["epochs"])
                kwargs["epochs"] = min(epochs, max_epochs) if max_epochs else epochs
            return model.fit(*args, batch_size=dim(hp, "batch_size", space["batch_size"]), **kwargs)

    return MLP()


def _keras_tuner(kind: str, overrides: list[str]) -> common.Job:
    import keras
    import keras_tuner as kt

    space = _space()
    # The early stopping tuning's trials get (its config, with the same overrides).
    patience = common.settings(overrides)["training"]["early_stopping"]["patience"]

    class CountEpochs(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            EPOCHS_SEEN.append(0)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            EPOCHS_SEEN[-1] += 1

    def search(job: dict[str, Any]) -> dict[str, Any]:
        dataset = common.dataset(_data_overrides(job))
        cap = job.get("max_epochs")
        hypermodel = _hypermodel(space, dataset, cap)
        common_args = {
            "objective": "val_loss",
            "directory": "kt",
            "project_name": f"{kind}-{job['data']}-{job['seed']}",
            "seed": job["seed"],
        }
        if kind == "hyperband":
            tuner = kt.Hyperband(
                hypermodel, max_epochs=cap or space["epochs"]["high"], factor=3, **common_args
            )
        else:
            tuner = kt.RandomSearch(hypermodel, max_trials=100000, **common_args)
        start = time.perf_counter()
        deadline = time.monotonic() + job["budget"]
        populate = tuner.oracle.populate_space

        def until_deadline(trial_id: str) -> dict[str, Any]:
            # The same rule as Optuna's timeout: no new trial once the budget is spent.
            if time.monotonic() >= deadline:
                return {"status": "STOPPED", "values": None}
            return populate(trial_id)

        tuner.oracle.populate_space = until_deadline
        EPOCHS_SEEN.clear()
        tuner.search(
            dataset.x_train,
            dataset.y_train,
            validation_data=(dataset.x_val, dataset.y_val),
            callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience), CountEpochs()],
            verbose=0,
        )
        used = time.perf_counter() - start
        done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
        # One fit per trial, in the order the oracle made them (its ids count up).
        ordered = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
        trace = [
            [epochs, float(t.score) if t.status == "COMPLETED" and t.score is not None else None]
            for t, epochs in zip(ordered, EPOCHS_SEEN, strict=False)
        ]
        best_trial = tuner.oracle.get_best_trials(1)[0]
        model = tuner.get_best_models(1)[0]
        test = model.evaluate(dataset.x_test, dataset.y_test, verbose=0, return_dict=True)
        return {
            "used": used,
            "trials": len(done),
            # Counted from the oracle's trials, never written as a constant: KerasTuner has no
            # PRUNED state; Hyperband's low rungs end COMPLETED at fewer epochs, and a trial the
            # oracle stopped reads STOPPED.
            "pruned": sum(t.status == "STOPPED" for t in tuner.oracle.trials.values()),
            "epochs": sum(EPOCHS_SEEN),
            "best_val": float(best_trial.score),
            "test_loss": float(test["loss"]),
            "test_acc": float(test["accuracy"]),
            "trace": trace,
        }

    # Warm-up outside every budget: TensorFlow's first model in this process.
    warm = common.dataset(["data=breast_cancer"])
    model = _hypermodel(space, warm, 1).build(kt.HyperParameters())
    model.fit(warm.x_train, warm.y_train, validation_data=(warm.x_val, warm.y_val), epochs=1, verbose=0)
    return search


def hyperband(params: dict[str, Any]) -> common.Job:
    return _keras_tuner("hyperband", params.get("overrides", []))


def random(params: dict[str, Any]) -> common.Job:
    return _keras_tuner("random", params.get("overrides", []))


# --- the comparison ---------------------------------------------------------------------------


def _variant(text: str) -> tuple[str, list[str]]:
    """``hb=pruner=hyperband,pruner.min_resource=3`` -> ("tuning-hb", [overrides])."""
    name, _, overrides = text.partition("=")
    if not name or "=" not in overrides:
        raise SystemExit(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]")
    return f"tuning-{name}", overrides.split(",")


def epochs_to_reach(trace: list[list[Any]], target: float) -> int | None:
    """Epochs a search had trained when one of its trials first scored ``target`` or better."""
    spent = 0
    for epochs, value in trace:
        spent += epochs
        if value is not None and value <= target + 1e-12:
            return spent
    return None


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3 (1 with --quick)")
    p.add_argument("--budget", type=float, help="seconds per search (default: 120, 20 with --quick)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a `tuning sweep` override for the tuning method (repeatable), e.g. pruner=hyperband",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=KEY=VALUE[,KEY=VALUE]",
        help="one more method, tuning-NAME: tuning with these overrides, run side by side with the "
        "others (repeatable), e.g. hb=pruner=hyperband",
    )
    args = p.parse_args()
    variants = dict(_variant(v) for v in args.variant)
    if args.child:
        setups = {"tuning": tuning, "hyperband": hyperband, "random": random}
        for name in json.loads(args.params).get("variants", {}):  # the parent's --variant list
            setups[name] = lambda params, name=name: tuning({"overrides": params["variants"][name]})
        common.serve(args, setups)
        return
    started = time.perf_counter()
    seeds, budget, cap = ((1,), 20, 20) if args.quick else ((1, 2, 3), 120, None)
    seeds = tuple(args.seeds or seeds)
    budget = args.budget or budget
    methods = (*args.methods, *variants)
    common.print_header("search efficiency: same space, same wall-clock budget", args)
    print(
        f"data sets {', '.join(args.datasets)}; seeds {list(seeds)}; budget {budget:g} s per search; "
        f"objective val_loss; epochs {'capped at ' + str(cap) if cap else 'as sampled (20-100)'}"
        + (f"; tuning overrides {args.override}" if args.override else "")
        + "".join(f"; {name}: {overrides}" for name, overrides in variants.items())
        + "\n",
        flush=True,
    )
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with common.workers(__file__, methods, {"overrides": args.override, "variants": variants}) as pool:
        n = 0
        for data in args.datasets:
            for seed in seeds:
                for method in common.rotated(methods, n):
                    job = {"data": data, "seed": seed, "budget": budget, "max_epochs": cap}
                    r = pool[method].run(job)
                    results.setdefault((data, method), []).append(r)
                    print(
                        f"{data:<13} seed {seed} {method:<9} {r['trials']:3d} trials ({r['pruned']} pruned), "
                        f"{r['epochs']:4d} epochs in {r['used']:5.1f} s; best val_loss {r['best_val']:.4f}, "
                        f"test loss {r['test_loss']:.4f}, test accuracy {r['test_acc']:.4f}",
                        flush=True,
                    )
                n += 1
    print("\nmedians over seeds (val/test loss: lower is better; epochs: fewer is cheaper):")
    for data in args.datasets:
        rows = []
        first = methods[0]
        base_epochs = common.median([r["epochs"] for r in results[(data, first)]])
        for method in methods:
            rs = results[(data, method)]
            epochs = common.median([r["epochs"] for r in rs])
            # The score every method reached on a seed: the worst of their final bests.
            reach = []
            for k in range(len(seeds)):
                target = max(results[(data, m)][k]["best_val"] for m in methods)
                reach.append(epochs_to_reach(rs[k]["trace"], target))
            rows.append(
                [
                    method,
                    common.median([r["best_val"] for r in rs]),
                    common.median([r["test_loss"] for r in rs]),
                    common.median([r["test_acc"] for r in rs]),
                    epochs,
                    epochs / base_epochs,
                    common.median([e for e in reach if e is not None]),
                    common.median([r["epochs"] / r["used"] for r in rs]),
                    common.median([r["trials"] for r in rs]),
                    common.median([r["used"] for r in rs]),
                ]
            )
        print(f"\n{data}:")
        print(
            common.table(
                rows,
                [
                    "method",
                    "best val_loss",
                    "test loss",
                    "test acc",
                    "epochs",
                    f"x {first}",
                    "epochs to common score",
                    "epochs/s",
                    "trials",
                    "s used",
                ],
            )
        )
        ours = [m for m in methods if m.startswith("tuning")]
        for us in ours:
            for other in (m for m in methods if m not in ours):
                wins, needed = 0, []
                for mine, theirs in zip(results[(data, us)], results[(data, other)], strict=True):
                    wins += mine["best_val"] <= theirs["best_val"]
                    needed.append((epochs_to_reach(mine["trace"], theirs["best_val"]), theirs["epochs"]))
                shown = ", ".join(f"{'never' if e is None else e}/{t}" for e, t in needed)
                print(
                    f"{us} vs {other}: better or equal best val_loss on {wins}/{len(needed)} seeds; "
                    f"epochs {us} needed to reach {other}'s best / epochs {other} trained: {shown}"
                )
    print(
        "\n'epochs to common score': epochs trained until the search first had a trial as good as "
        "the worst of the methods' final bests on that seed (a score every method reached)."
    )
    common.print_footer(started)


if __name__ == "__main__":
    main()
