"""The final model: best.yaml -> `tuning train` (refit, one test evaluation, save, MLflow registry)
-> `tuning predict` on new raw rows, and every way these commands refuse bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli, settings

from tuning.config import DataConfig
from tuning.config.schema import SplitConfig
from tuning.config.space import Hyperparameters
from tuning.errors import ConfigError
from tuning.final.best import best_config, read_best, write_yaml
from tuning.final.refit import refit_epochs

# --- fast: the epoch rule, best.yaml checks, command-line errors ------------------------------


def test_refit_keeps_the_best_trials_weight_updates():
    # 3 epochs x ceil(240/32)=8 updates = 24; on 320 rows an epoch makes 10 updates -> 2 epochs
    assert refit_epochs(3, 240, 80, 32) == 2
    # 10 x 19 = 190 updates; 25 per epoch on 800 rows -> 7.6 -> 8
    assert refit_epochs(10, 600, 200, 32) == 8
    assert refit_epochs(1, 10, 1000, 32) == 1  # never fewer than one epoch


def synthetic_best(folder: Path, **best: Any) -> Path:
    """A valid best.yaml (tiny plants, tracking off) without running a sweep."""
    hp = Hyperparameters(units=(8,), epochs=5, batch_size=32)
    info = {"trial": 0, "value": 0.5, "metric": "val_loss", "direction": "minimize", "study": "plants"}
    info.update({"best_epoch": 2, "n_params": 33, "seed": 42, **best})
    return write_yaml(folder / "best.yaml", best_config(settings(), hp, task="binary", best=info))


def edited(path: Path, edit) -> Path:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d["best"].pop("best_epoch"), "best.best_epoch"),
        (lambda d: d["best"].update(best_epoch=0), "best.best_epoch"),
        (lambda d: d["best"].update(trial="first"), "best.trial"),
        (lambda d: d.pop("best"), "best"),
        (lambda d: d.update(data="plants"), "data"),
        (lambda d: d.update(seed=-1), "seed"),
        (
            lambda d: d["search_space"].update(dropout={"type": "float", "low": 0, "high": 0.5}),
            "search_space.dropout",
        ),
        (lambda d: d["search_space"].update(activation="sparkle"), "search_space.activation"),
    ],
)
def test_a_malformed_best_yaml_names_the_key(tmp_path, edit, key):
    path = edited(synthetic_best(tmp_path), edit)
    with pytest.raises(ConfigError) as err:
        read_best(path)
    assert err.value.key == key
    assert str(path) in err.value.message


def test_an_unreadable_best_yaml_names_the_file(tmp_path):
    bad = tmp_path / "best.yaml"
    bad.write_text("data: [1\n")
    with pytest.raises(ConfigError, match=r"best: .*best.yaml is not valid YAML \(line 2\)"):
        read_best(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        read_best(bad)


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train"],
            "error: study: which study? give study=NAME or best=PATH; studies with a best.yaml in experiments/: plants",
        ),
        (
            ["train", "study=iris"],
            "error: study: no best.yaml for study 'iris' (experiments/iris/best.yaml); studies with a best.yaml in experiments/: plants",
        ),
        (["train", "best=elsewhere/best.yaml"], "error: best: no file elsewhere/best.yaml"),
        (
            ["train", "study=plants", "best=experiments/plants"],
            "error: best: give study=NAME or best=PATH, not both",
        ),
        (
            ["train", "study=plants", "final.epochs=0"],
            "error: final.epochs: 0; must be an integer >= 1 or null",
        ),
        (
            ["train", "study=plants", "final.refit=sometimes"],
            "error: final.refit: 'sometimes'; must be true or false",
        ),
        (
            ["train", "study=plants", "learning_rate=0.1"],
            "error: learning_rate: is not a config group or key",
        ),
        (["train", "study=plants", "data=iris"], "error: data: best.yaml fixes the data the search used"),
        (["train", "study=plants", "tracking=wandb"], "error: tracking: 'wandb' is not one of: mlflow, none"),
        (
            ["train", "study=plants", "search_space.units=[8,8]"],
            "error: search_space.units: [8, 8] has 2 widths but n_layers is 1",
        ),
        (["predict", "data.path=rows.csv"], "error: model: is required"),
        (
            ["predict", "model=experiments/plants/final", "data.path=rows.csv"],
            "error: model: no model.keras in experiments/plants/final",
        ),
        (
            ["predict", "model=x", "rows.csv"],
            "error: rows.csv: unknown argument; allowed: model=..., study=...",
        ),
    ],
)
def test_bad_commands_fail_in_one_line_and_write_nothing(in_tmp, capsys, args, message):
    synthetic_best(in_tmp / "experiments" / "plants")
    assert cli(args) == 2
    assert one_error_line(capsys).startswith(message)
    assert sorted(p.name for p in (in_tmp / "experiments" / "plants").iterdir()) == ["best.yaml"]


def test_a_malformed_best_yaml_stops_the_command(in_tmp, capsys):
    edited(synthetic_best(in_tmp / "experiments" / "plants"), lambda d: d["best"].pop("trial"))
    assert cli(["train", "study=plants"]) == 2
    assert one_error_line(capsys) == (
        "error: best.trial: missing in experiments/plants/best.yaml (re-run `tuning sweep` to write it again)"
    )


def test_train_prints_the_composed_config_with_overrides(in_tmp, capsys):
    synthetic_best(in_tmp / "experiments" / "plants")
    assert cli(["train", "study=plants", "seed=3", "final.refit=false", "--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 3 and printed["final"] == {"refit": False, "epochs": None}
    assert printed["best"]["best_epoch"] == 2
    assert not (in_tmp / "experiments" / "plants" / "final").exists()


def test_a_best_yaml_listing_other_columns_or_classes_is_refused(tmp_path):
    from tuning.data import load_dataset
    from tuning.errors import DataError
    from tuning.final.refit import check_columns

    cfg = settings()
    dataset = load_dataset(DataConfig.parse(cfg["data"]), SplitConfig.parse(cfg["split"]), 42)
    hp = Hyperparameters(units=(8,))
    with pytest.raises(DataError, match="made for the columns height, width; this data has height, branches"):
        check_columns(dataset, hp, {"columns": ["height", "width"]}, "best.yaml")
    with pytest.raises(DataError, match="made for the classes A, C; this data has A, B"):
        check_columns(
            dataset, hp, {"columns": ["height", "branches"], "class_names": ["A", "C"]}, "best.yaml"
        )


@pytest.mark.parametrize("task, target", [("multiclass", "colour"), ("regression", "price")])
def test_predictions_have_the_tasks_columns(tmp_path, task, target):
    """An untrained real model and the real fitted preprocessing: output columns per task."""
    from tuning.data import load_dataset
    from tuning.data.pipeline import features
    from tuning.final.saved import SavedModel, pipeline_spec, predict_frame
    from tuning.search.trial import new_model

    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "shop": rng.choice(["north", "south"], n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "price": rng.normal(10, 2, n),
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False)
    data = {"source": "csv", "path": str(tmp_path / "t.csv"), "target": target, "task": task}
    data["drop"] = ["price" if target == "colour" else "colour"]
    dataset = load_dataset(DataConfig.parse(data), SplitConfig(0.2, 0.2), 0)
    model = new_model(Hyperparameters(units=(4,)), dataset)
    meta = {"task": task, "target": target, "columns": dataset.columns, "class_names": dataset.class_names}
    rows = table.drop(columns=[target]).head(5).assign(shop=["east", None, "north", "south", "west"])
    out = predict_frame(SavedModel(model, dataset.preprocessor, meta, tmp_path), rows)
    raw = model.predict(dataset.preprocessor.transform(rows), verbose=0)
    # pipeline.json (what tuning predict and the MLflow model use) makes the very same features.
    spec = json.loads(json.dumps(pipeline_spec(dataset)))
    assert np.array_equal(features(spec, rows), dataset.preprocessor.transform(rows))
    from_spec = predict_frame(SavedModel(model, dataset.preprocessor, meta, tmp_path, spec), rows)
    pd.testing.assert_frame_equal(from_spec, out)
    if task == "regression":
        assert list(out.columns) == [*rows.columns, "predicted_price"]
        np.testing.assert_allclose(out["predicted_price"], raw[:, 0], rtol=1e-6)
    else:
        probabilities = [f"probability_{c}" for c in ["blue", "green", "red"]]
        assert list(out.columns) == [*rows.columns, "predicted_colour", *probabilities]
        np.testing.assert_allclose(out[probabilities].to_numpy(), raw, rtol=1e-6)
        assert list(out["predicted_colour"]) == [["blue", "green", "red"][i] for i in raw.argmax(axis=1)]


BEST = {"metric": "val_log_loss", "direction": "minimize", "value": 0.2981, "gap_log_loss": 0.0171}


def test_the_final_model_is_checked_against_its_trial_beyond_the_trials_own_noise():
    from tuning.final.check import compare

    # issue 32's case: refit 0.3629 on its own rows, trial 0.2981: worse by 0.0648 > the gap 0.0171
    check = compare(BEST, {"log_loss": 0.3629}, {}, refit=True)
    assert check is not None and check.worse and check.noise == pytest.approx(0.0171)
    assert check.line() == (
        "warning: the final model is worse than its trial: log_loss 0.3629 on the train+validation rows it "
        "trained on vs the best trial's val_log_loss 0.2981 (worse by 0.0648; noise 0.0171: the trial's "
        "train/validation gap gap_log_loss); use final.refit=false to replay the trial (train split, "
        "early stopping: its validation score again)"
    )
    assert check.metrics()["check_worse"] == 1.0
    # within the gap, or better: no warning
    assert not compare(BEST, {"log_loss": 0.31}, {}, refit=True).worse
    assert (
        compare(BEST, {"log_loss": 0.25}, {}, refit=True)
        .line()
        .startswith(
            "final model vs its trial: log_loss 0.2500 on the train+validation rows it trained on vs the best "
            "trial's val_log_loss 0.2981 (not worse by 0.0481;"
        )
    )
    # k-fold: the folds' spread is the noise when it is the larger
    folds = {**BEST, "cv_std": 0.08, "cv_folds": 3}
    assert not compare(folds, {"log_loss": 0.3629}, {}, refit=True).worse
    # a maximized metric: lower is worse; a gap of ~0 leaves the 1% floor (0.0091 here)
    acc = {"metric": "val_accuracy", "direction": "maximize", "value": 0.9083, "gap_accuracy": 0.0}
    assert compare(acc, {"accuracy": 0.865}, {}, refit=True).worse
    assert not compare(acc, {"accuracy": 0.90}, {}, refit=True).worse
    # replay: the validation split against the trial's validation value
    assert not compare(BEST, {"log_loss": 0.5}, {"log_loss": 0.2981}, refit=False).worse
    # a best.yaml without the trial's value: nothing to compare
    assert compare({"best_epoch": 3}, {"log_loss": 0.3}, {}, refit=True) is None


# --- slow: a real sweep, the final model, MLflow, predictions --------------------------------


def plants_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """The tutorial's plants with a soil category and a few gaps, as a user's CSV would be."""
    from tuning.data.plants import load_plants

    rng = np.random.default_rng(seed)
    frame = load_plants(n, seed=seed)
    frame.insert(2, "soil", rng.choice(["clay", "sand", "loam"], n).astype(object))
    frame.loc[rng.random(n) < 0.05, "height"] = np.nan
    frame.loc[rng.random(n) < 0.05, "soil"] = None
    return frame


SWEEP = [
    "data=csv",
    "data.path=plants.csv",
    "data.target=species",
    "study.n_trials=2",
    "training.max_epochs=3",
    "final.refit=true",  # these tests follow the refit; the replay has its own (final.refit=false)
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One real sweep (two 3-epoch trials, tracked in the embedded MLflow store) for the slow tests."""
    root = tmp_path_factory.mktemp("final")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        plants_table().to_csv("plants.csv", index=False)
        assert cli(["sweep", *SWEEP]) == 0
        yield root


def store(root: Path) -> str:
    """The sweep's embedded MLflow store, by absolute path (MLflow caches stores by URI)."""
    return f"sqlite:///{root / 'experiments' / 'mlflow.db'}"


def copy_best(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return Path(shutil.copy(root / "experiments" / "plants" / "best.yaml", folder / "best.yaml"))


@pytest.mark.slow
def test_sweep_train_predict_end_to_end(swept, monkeypatch, capsys):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.chdir(swept)
    best = read_best("experiments/plants/best.yaml")["best"]
    assert cli(["train", "study=plants"]) == 0

    final = swept / "experiments" / "plants" / "final"
    assert {"model.keras", "preprocessing.joblib", "meta.json", "metrics.csv", "history.csv"} <= {
        p.name for p in final.iterdir()
    }
    meta = json.loads((final / "meta.json").read_text())
    assert meta["columns"] == ["height", "branches", "soil"] and meta["class_names"] == ["A", "B"]
    assert meta["task"] == "binary" and meta["target"] == "species" and meta["refit"] is True
    assert meta["epochs"] == refit_epochs(best["best_epoch"], 240, 80, best_batch_size(swept))
    table = pd.read_csv(final / "metrics.csv", index_col="metric")
    assert list(table.index) == ["loss", "log_loss", "accuracy", "auc"]
    assert list(table.columns) == [
        "search train",
        "search val",
        "final train+val",
        "test",
        "search gap",
        "test gap",
    ]
    assert table.loc["loss", "search val"] == pytest.approx(best["val_loss"])
    assert table.loc["accuracy", "test"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    log = next(final.glob("runs/*/train.log")).read_text()
    assert "the test split is used here once" in log and "final train+val" in log
    # The refit beside its trial on the study's metric: within noise here, and said so in one line.
    check = meta["check"]
    assert check["metric"] == "val_log_loss" and check["check_worse"] == 0.0
    assert check["check_search_value"] == pytest.approx(best["value"])
    assert check["check_final_value"] == pytest.approx(meta["metrics"]["train"]["log_loss"])
    assert "warning: the final model is worse" not in log
    assert (
        f"final model vs its trial: log_loss {check['check_final_value']:.4f} on the train+validation rows"
        in log
    )

    # MLflow: a run 'final' linked to the sweep, the model registered with alias champion
    client = MlflowClient(store(swept))
    version = client.get_model_version_by_alias("plants", "champion")
    run = client.get_run(version.run_id)
    assert run.info.run_name == "final" and run.info.status == "FINISHED"
    experiment = client.get_experiment_by_name("plants").experiment_id
    assert run.info.experiment_id == experiment
    sweep = client.search_runs([experiment], "tags.`tuning.role` = 'sweep'")
    trial = client.search_runs([experiment], f"tags.`tuning.trial` = '{best['trial']}'")
    assert run.data.tags["tuning.sweep_run_id"] == sweep[0].info.run_id
    assert run.data.tags["tuning.best_trial_run_id"] == trial[0].info.run_id
    assert run.data.tags["tuning.best_trial"] == str(best["trial"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    assert run.data.metrics["check_worse"] == 0.0
    assert run.data.metrics["check_final_value"] == pytest.approx(check["check_final_value"])
    assert run.data.tags["tuning.final_check"].startswith("final model vs its trial: log_loss")
    assert len(client.get_metric_history(run.info.run_id, "while_training/loss")) == meta["epochs"]  # curve
    assert meta["mlflow"] == {
        "run_id": run.info.run_id,
        "model_uri": f"models:/plants/{version.version}",
        "alias": "champion",
        "model_id": meta["mlflow"]["model_id"],
    }
    assert client.get_logged_model(meta["mlflow"]["model_id"]).source_run_id == run.info.run_id
    mlflow.set_tracking_uri(store(swept))
    # The registered model is the whole pipeline: raw columns in, tuning predict's columns out.
    signature = mlflow.models.get_model_info("models:/plants@champion").signature
    assert [(c["name"], c["type"]) for c in signature.inputs.to_dict()] == [
        ("height", "double"),
        ("branches", "double"),
        ("soil", "string"),
    ]
    assert signature.outputs.input_names() == ["predicted_species", "probability_A", "probability_B"]

    # predict: an unseen category, missing values, an extra column (text in a number column is
    # refused: tests/faults/test_bad_rows_and_paths.py)
    rows = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "height": [50.0, None, 120.0, None],
            "branches": [3, 20, 14, 5],
            "soil": ["clay", "peat", None, "sand"],
        }
    )
    rows.to_csv("new_plants.csv", index=False)
    capsys.readouterr()
    assert cli(["predict", f"model={final / 'model.keras'}", "data.path=new_plants.csv"]) == 0
    assert "4 predictions of 'species'" in capsys.readouterr().out
    out = pd.read_csv("new_plants.predictions.csv")
    assert list(out.columns) == [
        "id",
        "height",
        "branches",
        "soil",
        "predicted_species",
        "probability_A",
        "probability_B",
    ]
    np.testing.assert_allclose(out["probability_A"] + out["probability_B"], 1.0, atol=1e-6)
    expected = np.where(out["probability_B"] > 0.5, "B", "A")
    assert list(out["predicted_species"]) == list(expected)

    # a missing column: one line, exit 2, nothing written
    rows.drop(columns=["soil"]).to_csv("no_soil.csv", index=False)
    assert cli(["predict", "study=plants", "data.path=no_soil.csv", "output=out/p.csv"]) == 2
    assert (
        one_error_line(capsys) == "error: data.path: missing columns: soil (needed: height, branches, soil)"
    )
    assert not Path("out").exists()


@pytest.mark.slow
def test_a_refit_worse_than_its_trial_is_warned_with_both_figures(swept, monkeypatch):
    # final.epochs=1: the refit stops after one pass, well short of the trial's updates.
    monkeypatch.chdir(swept)
    path = copy_best(swept, "short_refit")
    best = read_best(path)["best"]
    assert cli(["train", f"best={path}", "final.epochs=1", "tracking=none"]) == 0
    meta = json.loads((path.parent / "final" / "meta.json").read_text())
    check = meta["check"]
    assert check["check_worse"] == 1.0 and check["check_excess"] > check["check_noise"] > 0
    assert check["check_final_value"] == pytest.approx(meta["metrics"]["train"]["log_loss"])
    log = next((path.parent / "final").glob("runs/*/train.log")).read_text()
    warnings = [line for line in log.splitlines() if "warning: the final model is worse" in line]
    assert len(warnings) == 1, log
    assert warnings[0].endswith(
        f"warning: the final model is worse than its trial: log_loss {check['check_final_value']:.4f} "
        f"on the train+validation rows it trained on vs the best trial's val_log_loss {best['value']:.4f} "
        f"(worse by {check['check_excess']:.4f}; noise {check['check_noise']:.4f}: {check['noise_from']}); "
        "use final.refit=false to replay the trial (train split, early stopping: its validation score again)"
    )


def best_batch_size(root: Path) -> int:
    return int(read_best(root / "experiments" / "plants" / "best.yaml")["search_space"]["batch_size"])


@pytest.mark.slow
def test_same_best_yaml_and_seed_give_the_same_model_and_it_reloads_exactly(swept, monkeypatch):
    from tuning.config import parse
    from tuning.final.best import check_best
    from tuning.final.refit import train_final
    from tuning.final.saved import load_final, predict_frame, save_final

    monkeypatch.chdir(swept)
    finals = []
    for name in ("a", "b"):
        path = copy_best(swept, name)
        cfg = read_best(path)
        final = train_final(parse(cfg), check_best(cfg, str(path)), source=str(path))
        save_final(final, path.parent / "final")
        finals.append(final)
    a, b = finals
    assert {k: round(v, 4) for k, v in a.test.items()} == {k: round(v, 4) for k, v in b.test.items()}
    assert json.loads((swept / "a/final/meta.json").read_text())["metrics"]["test"] == a.test

    saved = load_final(swept / "a" / "final" / "model.keras")
    # What saving promises is bit-exact: the same weights and the same preprocessing.
    assert len(saved.model.weights) == len(a.model.weights)
    for reloaded, trained in zip(saved.model.get_weights(), a.model.get_weights(), strict=True):
        assert np.array_equal(reloaded, trained)
    x = a.dataset.x_test
    assert np.array_equal(
        saved.preprocessor.transform(pd.read_csv("plants.csv")),
        a.dataset.preprocessor.transform(pd.read_csv("plants.csv")),
    )
    # Predictions are not: the reloaded model's freshly traced function may get other CPU kernels
    # (oneDNN picks them by instruction set and batch shape), which sum in another order; on an
    # Intel Xeon 0.43015245 vs 0.43015236. Same weights, so equal within float32 rounding.
    np.testing.assert_allclose(
        saved.model.predict(x, verbose=0), a.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    raw = pd.read_csv("plants.csv").head(20)
    from_raw = predict_frame(saved, raw)["probability_B"].to_numpy()
    in_memory = a.model.predict(a.dataset.preprocessor.transform(raw), verbose=0)[:, 0]
    np.testing.assert_allclose(from_raw, in_memory.astype(np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_no_refit_replays_the_best_trial_and_skips_mlflow_when_off(swept, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(swept)
    path = copy_best(swept, "no_refit")
    best = read_best(path)["best"]
    client = MlflowClient(store(swept))
    finals_before = len(
        client.search_runs(
            [client.get_experiment_by_name("plants").experiment_id], "tags.`tuning.role` = 'final'"
        )
    )

    # A password on the command line (here in a URL train does not use) stays out of Hydra's files.
    secret_url = "study.storage=postgresql://tuner:pw-s3cret@db.example.org/optuna"
    assert cli(["train", f"best={path}", "final.refit=false", "tracking=none", secret_url]) == 0
    hydra_files = list((path.parent / "final" / "runs").glob("*/.hydra/*.yaml"))
    assert {p.name for p in hydra_files} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert all("pw-s3cret" not in p.read_text() for p in hydra_files)
    assert (
        "postgresql://tuner:***@db.example.org/optuna"
        in (hydra_files[0].parent / "overrides.yaml").read_text()
    )
    meta = json.loads((path.parent / "final" / "meta.json").read_text())
    assert meta["refit"] is False and "mlflow" not in meta
    # the same code path, seed and data as the trial: the search's validation values, again
    for name, value in meta["metrics"]["val"].items():
        assert round(value, 4) == round(best[f"val_{name}"], 4)
    finals_after = len(
        client.search_runs(
            [client.get_experiment_by_name("plants").experiment_id], "tags.`tuning.role` = 'final'"
        )
    )
    assert finals_after == finals_before


@pytest.mark.slow
def test_a_best_yaml_for_other_columns_is_refused(swept, monkeypatch, capsys):
    monkeypatch.chdir(swept)
    path = copy_best(swept, "other")
    pd.read_csv("plants.csv").drop(columns=["soil"]).to_csv("other.csv", index=False)
    assert cli(["train", f"best={path}", "data.path=other.csv", "tracking=none"]) == 2
    line = one_error_line(capsys)
    assert (
        line
        == f"error: data: {path} was made for the columns height, branches, soil; this data has height, branches"
    )
    assert not (path.parent / "final" / "model.keras").exists()
