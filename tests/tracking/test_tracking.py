"""MLflow tracking of sweeps, checked through MlflowClient: the embedded SQLite store and a real
`mlflow server` started here on 127.0.0.1; plus `tuning report` on the same studies.

Real sweeps train tiny Keras models (400 rows, 3 epochs). Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from conftest import (
    free_port,
    signal_during_trial_1,
    start_mlflow_server,
    stop_process_group,
    wait_for_mlflow,
)

from tuning.study.summary import flat_attrs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY = ("data.n_samples=400", "training.max_epochs=3")
SECRET = "hunter2"
# Diabetes regression where only the learning rate varies; seed 0 with the random sampler
# draws 1e6 first (SGD diverges to NaN: trial 0 FAIL), then 0.001 (trial 1 COMPLETE).
DIVERGING = (
    "data=diabetes",
    "training.max_epochs=3",
    "sampler=random",
    "seed=0",
    "pruner=none",
    "study.n_trials=2",
    "search_space.n_layers=1",
    "search_space.units=8",
    "search_space.activation=relu",
    "search_space.dropout=0.0",
    "search_space.batch_size=32",
    "search_space.epochs=20",
    "search_space.optimizer=sgd",
    "search_space.loss=mean_squared_error",
    "~search_space.learning_rate",
    "+search_space.learning_rate={type:categorical,choices:[0.001,1000000.0]}",
)
# Prunes every trial at its first epoch (any val_log_loss is above 1e-9).
PRUNE_ALL = ("pruner=none", "pruner.name=threshold", "pruner._target_=optuna.pruners.ThresholdPruner")


# --- helpers --------------------------------------------------------------------------------


def compose_settings(*overrides: str) -> dict[str, Any]:
    from tuning.config import compose, resolved

    return resolved(compose("config", list(overrides)))


def sweep(folder: Path, *overrides: str) -> tuple[Any, str]:
    """Run `tuning sweep` in-process in ``folder``; returns the study and everything it printed."""
    from tuning.commands.sweep import run
    from tuning.config import parse

    text = io.StringIO()
    handler = logging.StreamHandler(text)
    logger = logging.getLogger("tuning")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with (
            pytest.MonkeyPatch.context() as mp,
            contextlib.redirect_stdout(text),
            contextlib.redirect_stderr(text),
        ):
            mp.chdir(folder)
            cfg = compose_settings(*overrides)
            summary = run(cfg)
            # The Optuna study itself, to check MLflow against what the storage holds.
            url = parse(cfg).storage_url
            study = optuna.load_study(study_name=summary.name, storage=url)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return study, text.getvalue()


def cli(*args: str) -> int:
    from tuning.cli import main

    try:
        return main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def sweep_runs(client: Any, study: str) -> list[Any]:
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'sweep'")


def trial_runs(client: Any, study: str) -> dict[int, Any]:
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'trial'")
    return {int(r.data.tags["tuning.trial"]): r for r in runs}


def history(client: Any, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def series(client: Any, run_id: str, key: str) -> list[float]:
    values = history(client, run_id, key)
    assert sorted(values) == list(range(1, len(values) + 1)), f"{key}: steps are the epochs 1..n"
    return [values[s] for s in sorted(values)]


# --- a real MLflow server, booting while the embedded-store tests train -------------------


@pytest.fixture(scope="module", autouse=True)
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_mlflow_server(folder, port, f"sqlite:///{folder / 'server.db'}")
    yield SimpleNamespace(proc=proc, url=f"http://127.0.0.1:{port}", port=port, folder=folder)
    stop_process_group(proc)


@pytest.fixture(scope="module")
def mlflow_server(server_process: SimpleNamespace) -> SimpleNamespace:
    """The server's URL once ``/health`` answers."""
    wait_for_mlflow(server_process.proc, server_process.port, server_process.folder)
    return server_process


# --- fast checks: nothing trained ---------------------------------------------------------


def test_unreachable_server_is_one_line_exit_2_before_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"http://user:{SECRET}@127.0.0.1:{free_port()}"
    assert cli("sweep", f"tracking.uri={uri}", *TINY) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: tracking.uri: cannot reach MLflow at http://user:***@127.0.0.1:")
    assert SECRET not in out + err
    assert not (tmp_path / "experiments").exists(), "nothing written, nothing trained"


def test_sweep_run_checks_the_store_before_loading_data(tmp_path, monkeypatch):
    from tuning.commands.sweep import run
    from tuning.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="^tracking.uri: cannot reach MLflow"):
        run(compose_settings(f"tracking.uri=http://127.0.0.1:{free_port()}", *TINY))
    assert not list(tmp_path.rglob("optuna.db")), "the study is not even opened"


def test_bad_tracking_option_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("sweep", "tracking.plotlyjs=inline") == 2
    assert capsys.readouterr().err.strip() == "error: tracking.plotlyjs: 'inline'; allowed: none, embed"
    assert not (tmp_path / "experiments").exists()


def test_batches_stay_within_mlflow_limits():
    from mlflow.entities import Metric, Param, RunTag

    from tuning.tracking.sweep import batches

    metrics = [Metric(f"m{i}", float(i), 0, i) for i in range(2500)]
    params = [Param(f"p{i}", "v") for i in range(150)]
    tags = [RunTag(f"t{i}", "v") for i in range(120)]
    calls = list(batches(metrics, params, tags))
    assert all(len(m) <= 1000 and len(p) <= 100 and len(t) <= 100 for m, p, t in calls)
    assert all(len(m) + len(p) + len(t) <= 1000 for m, p, t in calls)
    assert [x for m, _, _ in calls for x in m] == metrics
    assert [x for _, p, _ in calls for x in p] == params
    assert [x for _, _, t in calls for x in t] == tags
    assert len(calls) == 3


# --- the embedded store: a study run, then resumed with a pruner ---------------------------


def interrupted_sweep(folder: Path, *overrides: str) -> tuple[int, str]:
    """`tuning sweep` as a process, sent SIGINT (Ctrl-C) while trial 1 builds and traces its model."""
    return signal_during_trial_1(folder, signal.SIGINT, *overrides, settle=0.3)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One study over three sessions on the embedded store:

    1. `tuning sweep` interrupted by Ctrl-C in trial 1 (trial 0 COMPLETE, trial 1 FAIL);
    2. resumed: trial 1's parameters re-run as trial 2 (COMPLETE);
    3. resumed with a pruner that prunes at the first epoch: trial 3 PRUNED.
    """
    folder = tmp_path_factory.mktemp("embedded")
    code, cli_output = interrupted_sweep(folder, *TINY, "pruner=none", "study.n_trials=3")
    client = client_for(f"sqlite:///{folder}/experiments/mlflow.db")
    after_ctrl_c = SimpleNamespace(
        code=code,
        output=cli_output,
        parents=sweep_runs(client, "plants"),
        children=trial_runs(client, "plants"),
    )
    _, resumed_output = sweep(folder, *TINY, "pruner=none", "study.n_trials=2")
    study, output = sweep(folder, *TINY, "study.n_trials=3", *PRUNE_ALL, "+pruner.upper=1.0e-9")
    return SimpleNamespace(
        folder=folder,
        client=client,
        study=study,
        after_ctrl_c=after_ctrl_c,
        output=resumed_output + output,
        children=trial_runs(client, "plants"),
        parent=sweep_runs(client, "plants")[0],
    )


@pytest.mark.slow
def test_ctrl_c_ends_the_trial_and_the_sweep_killed(embedded):
    first = embedded.after_ctrl_c
    assert first.code == 130, first.output
    assert "interrupted" in first.output
    assert [p.info.status for p in first.parents] == ["KILLED"]
    assert first.children[0].info.status == "FINISHED"
    assert first.children[1].info.status == "KILLED"
    assert first.children[1].data.tags["tuning.state"] == "FAIL"
    assert first.children[1].data.tags["tuning.fail_reason"] == "interrupted"


@pytest.mark.slow
def test_resume_reruns_the_interrupted_trial_under_the_same_parent(embedded):
    children = embedded.children
    assert children[2].data.params == {
        **children[1].data.params,
        "seed": str(flat_attrs(embedded.study.trials[2].user_attrs)["seed"]),
    }
    assert children[1].info.status == "KILLED"


@pytest.mark.slow
def test_one_parent_run_per_study_reused_on_resume(embedded):
    parents = sweep_runs(embedded.client, "plants")
    assert len(parents) == 1
    assert parents[0].info.run_id == embedded.after_ctrl_c.parents[0].info.run_id
    parent = parents[0]
    assert parent.info.run_name == "sweep"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tuning.study"] == "plants"
    assert parent.data.tags["tuning.storage"] == "sqlite:///experiments/plants/optuna.db"
    # What the study was made with: the first session's, never overwritten by later ones.
    assert parent.data.tags["tuning.n_trials"] == "3"
    assert parent.data.tags["tuning.pruner"] == "none"
    assert parent.data.tags["tuning.seed"] == "42"
    params = parent.data.params
    assert {k: params[k] for k in ("metric", "direction", "data", "task", "seed", "data.n_samples")} == {
        "metric": "val_log_loss",
        "direction": "minimize",
        "data": "plants",
        "task": "binary",
        "seed": "42",
        "data.n_samples": "400",
    }
    assert json.loads(params["search_space.units"]) == {"type": "int", "low": 8, "high": 128, "log": True}
    assert not any(k.startswith(("sampler", "pruner", "study.n_trials")) for k in params)
    # Each command that ran on the study has its own entry.
    runs = {k: v for k, v in parent.data.tags.items() if k.startswith("tuning.run.")}
    assert sorted(runs) == ["tuning.run.1", "tuning.run.2", "tuning.run.3"]
    assert "study.n_trials=3" in runs["tuning.run.1"] and runs["tuning.run.1"].endswith("ended KILLED")
    assert "trials: 1 COMPLETE; ended FINISHED" in runs["tuning.run.2"]
    assert "pruner=threshold" in runs["tuning.run.3"]  # run in-process: no command-line overrides
    assert "trials: 1 PRUNED; ended FINISHED" in runs["tuning.run.3"]


@pytest.mark.slow
def test_a_child_run_per_trial_with_state_status_and_times(embedded):
    trials = embedded.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "PRUNED"]
    assert sorted(embedded.children) == [0, 1, 2, 3]
    # Pruned trials end FINISHED (the state tag tells them apart); trial 1 was Ctrl-C'd: KILLED.
    statuses = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "KILLED"}
    best = embedded.study.best_trial.number
    suffix = {"COMPLETE": "", "PRUNED": " pruned", "FAIL": " interrupted"}  # trial 1: Ctrl-C
    for t in trials:
        run = embedded.children[t.number]
        # The runs table tells outcomes apart by name, and names the study's best.
        expected = f"trial-{t.number:04d}" + (" ★ best" if t.number == best else suffix[t.state.name])
        assert run.info.run_name == expected
        assert run.data.tags.get("tuning.best", "false") == ("true" if t.number == best else "false")
        assert run.data.tags["mlflow.parentRunId"] == embedded.parent.info.run_id
        assert run.data.tags["tuning.study"] == "plants"
        assert run.data.tags["tuning.trial"] == str(t.number)
        assert run.data.tags["tuning.state"] == t.state.name
        assert run.info.status == statuses[t.state.name]
        started, ended = t.datetime_start.timestamp() * 1000, t.datetime_complete.timestamp() * 1000
        assert started - 1000 <= run.info.start_time <= run.info.end_time <= ended + 1000


@pytest.mark.slow
def test_child_params_are_the_search_space_names_plus_fixed_settings(embedded):
    for t in embedded.study.trials:
        params = embedded.children[t.number].data.params
        assert {k: params[k] for k in t.params} == {k: str(v) for k, v in t.params.items()}
        assert {f"units_{i}" for i in range(t.params["n_layers"])} <= set(params)
        assert params["seed"] == str(flat_attrs(t.user_attrs)["seed"])
        fixed = {k: params[k] for k in ("data", "task", "max_epochs", "patience", "monitor", "metric")}
        assert fixed == {
            "data": "plants",
            "task": "binary",
            "max_epochs": "3",
            "patience": "10",
            "monitor": "val_log_loss",
            "metric": "val_log_loss",
        }
        assert params["batch_size"] == str(t.params["batch_size"])


@pytest.mark.slow
def test_per_epoch_metrics_and_gaps_match_the_trial_history(embedded):
    client = embedded.client
    for t in embedded.study.trials:
        run_id = embedded.children[t.number].info.run_id
        val_log_loss = series(client, run_id, "while_training/val_log_loss")
        # The pruning callback stored each epoch's objective in the study: the same numbers.
        assert val_log_loss == [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        assert len(val_log_loss) == flat_attrs(t.user_attrs).get("epochs_trained", len(t.intermediate_values))
        val_loss = series(client, run_id, "while_training/val_loss")
        loss = series(client, run_id, "while_training/loss")
        assert series(client, run_id, "while_training/gap_loss") == pytest.approx(
            [v - tr for tr, v in zip(loss, val_loss, strict=True)], abs=1e-9
        )
        for name in ("accuracy", "auc"):  # accuracy-like: train - validation
            train, val = (
                series(client, run_id, f"while_training/{name}"),
                series(client, run_id, f"while_training/val_{name}"),
            )
            assert series(client, run_id, f"while_training/gap_{name}") == pytest.approx(
                [tr - v for tr, v in zip(train, val, strict=True)], abs=1e-9
            )


@pytest.mark.slow
def test_final_metrics_are_the_restored_best_weights(embedded):
    client = embedded.client
    for t in embedded.study.trials:
        run = embedded.children[t.number]
        m = run.data.metrics
        assert m["epochs_trained"] == flat_attrs(t.user_attrs).get(
            "epochs_trained", len(t.intermediate_values)
        )
        assert m["seconds"] > 0
        if t.state.name == "FAIL":
            assert "objective" not in m and "best_epoch" not in m
            continue
        # Optuna gives a pruned trial its last reported value: logged as its objective too.
        assert m["objective"] == pytest.approx(t.value, rel=1e-12)
        if t.state.name == "PRUNED":
            assert t.value == t.intermediate_values[0]
            assert "best_epoch" not in m and "gap_loss" not in m  # no restored weights to measure
            continue
        a = flat_attrs(t.user_attrs)
        assert m["best_epoch"] == a["best_epoch"]
        assert m["early_stopped"] == float(a["early_stopped"])
        assert m["n_params"] == a["n_params"]
        for name in ("loss", "log_loss", "accuracy", "auc"):
            # Headline values under the plain names: the restored best weights, not the last epoch.
            assert m[name] == pytest.approx(a[f"train_{name}"], rel=1e-12)
            assert m[f"val_{name}"] == pytest.approx(a[f"val_{name}"], rel=1e-12)
            assert m[f"gap_{name}"] == pytest.approx(a[f"gap_{name}"], rel=1e-12)
        assert m["gap_loss"] == pytest.approx(m["val_loss"] - m["loss"], abs=1e-9)
        # The objective is val_log_loss at the restored best epoch, as the curve shows it.
        at_best = history(client, run.info.run_id, "while_training/val_log_loss")[int(m["best_epoch"])]
        assert m["val_log_loss"] == pytest.approx(t.value, rel=1e-12)
        assert at_best == pytest.approx(t.value, rel=1e-3)


@pytest.mark.slow
def test_parent_keeps_the_best_trial_current(embedded):
    study, parent = embedded.study, embedded.parent
    m = parent.data.metrics
    assert m["best_objective"] == pytest.approx(study.best_value, rel=1e-12)
    assert m["best_trial"] == study.best_trial.number
    assert (m["n_complete"], m["n_pruned"], m["n_fail"]) == (2, 1, 1)
    best_tags = {k.removeprefix("best."): v for k, v in parent.data.tags.items() if k.startswith("best.")}
    assert best_tags == {k: str(v) for k, v in study.best_trial.params.items()}
    assert parent.data.tags["tuning.best_trial"] == str(study.best_trial.number)
    best_run = embedded.children[study.best_trial.number].info.run_id
    assert parent.data.tags["tuning.best_trial_run_id"] == best_run
    # The parent's headline is the study's result: the best trial's values at its restored weights.
    a = flat_attrs(study.best_trial.user_attrs)
    assert m["val_log_loss"] == pytest.approx(a["val_log_loss"], rel=1e-12)
    assert m["gap_log_loss"] == pytest.approx(a["gap_log_loss"], rel=1e-12)
    assert m["log_loss"] == pytest.approx(a["train_log_loss"], rel=1e-12)
    # The experiment says what the study is; the UI opens it on the runs table.
    experiment = embedded.client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    note = experiment.tags["mlflow.note.content"]
    assert "binary task on data 'plants'" in note and "ranked by val_log_loss (minimize)" in note
    assert "activation in ['relu', 'tanh', 'elu']" in note
    # The parent's objective is the study's best (step = trials in the study), never a trial's.
    objectives = history(embedded.client, parent.info.run_id, "objective")
    assert sorted(objectives) == [1, 2, 3, 4]
    complete = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    for step, value in objectives.items():
        assert value == pytest.approx(min(v for n, v in complete.items() if n < step))
    assert objectives[4] == pytest.approx(study.best_value)
    assert history(embedded.client, parent.info.run_id, "best_objective") == objectives


@pytest.mark.slow
def test_parent_artifacts_table_plots_curves_config(embedded, tmp_path):
    from tuning.results.table import trials_table
    from tuning.search.engines.optuna_study import summarize as from_study

    client, run_id = embedded.client, embedded.parent.info.run_id
    assert {a.path for a in client.list_artifacts(run_id)} == {
        "trials.csv",
        "config.yaml",
        "learning_curves.png",
        "plots",
    }
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {
        f"plots/{name}.png"  # PNG only by default: previewed by MLflow, no internet needed
        for name in ("optimization_history", "param_importances", "parallel_coordinate", "slice")
    }
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    table = pd.read_csv(local / "trials.csv")
    expected = trials_table(from_study(embedded.study))
    assert list(table.columns) == expected.columns
    assert {"gap_loss", "gap_accuracy", "gap_auc"} <= set(table.columns)
    assert table["trial"].tolist() == expected.column("trial")
    gaps = [math.nan if v is None else v for v in expected.column("gap_loss")]
    assert table["gap_loss"].tolist() == pytest.approx(gaps, nan_ok=True)
    assert (local / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = yaml.safe_load((local / "config.yaml").read_text())
    assert config["study"]["n_trials"] == 3 and config["data"]["name"] == "plants"
    from matplotlib.image import imread

    for plot in (local / "plots").iterdir():  # drawn, not blank: many distinct pixel values
        pixels = imread(plot)
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pixels.std() > 0.05, plot
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 20, plot


@pytest.mark.slow
def test_sweep_prints_the_command_that_opens_the_ui(embedded):
    exp = embedded.client.get_experiment_by_name("plants")
    assert "mlflow ui --backend-store-uri sqlite:///experiments/mlflow.db" in embedded.output
    assert f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs" in embedded.output
    assert exp.artifact_location == (embedded.folder / "experiments" / "mlartifacts").as_uri()


# --- `tuning report` on the same study ------------------------------------------------------

REPORT_NO_TF = (
    "import sys\nfrom tuning.cli import main\nrc = main(sys.argv[1:])\n"
    "heavy = sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules)\n"
    "assert not heavy, heavy\nsys.exit(rc)\n"
)


@pytest.mark.slow
def test_report_shows_gaps_and_names_its_storage_without_tensorflow(embedded):
    done = subprocess.run(
        [sys.executable, "-c", REPORT_NO_TF, "report", "plants", "--wide", "--csv", "out/trials.csv"],
        cwd=embedded.folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "study 'plants' in sqlite:///experiments/plants/optuna.db: minimize val_log_loss; "
        "4 trials: 2 COMPLETE, 1 PRUNED, 1 FAIL"
    )
    header = lines[1].split()
    assert header[:3] == ["trial", "state", "val_log_loss"]
    assert {"gap_log_loss", "gap_loss", "gap_accuracy", "gap_auc", "best_epoch"} <= set(header)
    best = embedded.study.best_trial.number
    assert lines[2].split()[:2] == [str(best), "COMPLETE"]
    table = pd.read_csv(embedded.folder / "out" / "trials.csv")
    assert sorted(table["state"]) == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]


@pytest.mark.slow
def test_report_on_unknown_study_lists_the_studies(embedded, monkeypatch, capsys):
    monkeypatch.chdir(embedded.folder)
    assert cli("report", "nope") == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: study: no study 'nope' in experiments/; studies: plants"


@pytest.mark.slow
def test_report_reads_a_running_study(embedded, tmp_path, monkeypatch, capsys):
    import optuna

    copy = tmp_path / "experiments" / "plants" / "optuna.db"
    copy.parent.mkdir(parents=True)
    shutil.copy(embedded.folder / "experiments" / "plants" / "optuna.db", copy)
    optuna.load_study(study_name="plants", storage=f"sqlite:///{copy}").ask()  # a trial now RUNNING
    monkeypatch.chdir(tmp_path)
    assert cli("report") == 0
    out = capsys.readouterr().out
    assert "5 trials: 2 COMPLETE, 1 PRUNED, 1 FAIL, 1 RUNNING" in out.splitlines()[0]
    running = [line.split() for line in out.splitlines()[2:] if "RUNNING" in line]
    assert len(running) == 1 and running[0][0] == "4"


# --- tracking off ----------------------------------------------------------------------------


@pytest.mark.slow
def test_tracking_none_creates_no_mlflow_store(tmp_path):
    _, output = sweep(tmp_path, *TINY, "study.n_trials=1", "tracking=none")
    assert (tmp_path / "experiments" / "plants" / "optuna.db").exists()
    assert not list(tmp_path.rglob("mlflow.db"))
    assert not list(tmp_path.rglob("mlartifacts")) and not (tmp_path / "mlruns").exists()
    assert "MLflow" not in output


# --- a real tracking server: failures, NaN, artifacts through the server, credentials -----


@pytest.fixture(scope="module")
def served(mlflow_server: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The diverging regression sweep, logged to the server through a URL holding a password,
    its study in a storage URL holding one too."""
    folder = tmp_path_factory.mktemp("served")
    storage = f"sqlite:///{folder}/optuna.db?password={SECRET}"
    tracking = f"http://user:{SECRET}@127.0.0.1:{mlflow_server.port}"
    with warnings.catch_warnings():  # SQLAlchemy: sqlite ignores the password: the point here
        warnings.filterwarnings("ignore", message="Query string argument")
        study, output = sweep(
            folder,
            *DIVERGING,
            f"study.storage='{storage}'",
            f"tracking.uri={tracking}",
            "tracking.plotlyjs=embed",
        )
    client = client_for(mlflow_server.url)
    return SimpleNamespace(
        folder=folder,
        study=study,
        output=output,
        client=client,
        server=mlflow_server,
        parent=sweep_runs(client, "diabetes")[0],
        children=trial_runs(client, "diabetes"),
    )


@pytest.mark.slow
def test_server_failed_trial_keeps_what_it_logged(served):
    assert [t.state.name for t in served.study.trials] == ["FAIL", "COMPLETE"]
    failed = served.children[0]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["tuning.state"] == "FAIL"
    assert failed.data.tags["tuning.fail_reason"] == "loss became NaN at epoch 1"
    assert math.isnan(series(served.client, failed.info.run_id, "while_training/loss")[0])
    assert failed.data.params["learning_rate"] == "1000000.0"
    assert "objective" not in failed.data.metrics


@pytest.mark.slow
def test_server_complete_trial_metrics_and_regression_gaps(served):
    t = served.study.trials[1]
    run = served.children[1]
    assert run.info.status == "FINISHED" and run.data.tags["tuning.state"] == "COMPLETE"
    assert run.data.tags["mlflow.parentRunId"] == served.parent.info.run_id
    val_rmse = series(served.client, run.info.run_id, "while_training/val_rmse")
    assert val_rmse == [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
    for name in ("loss", "mae", "rmse"):  # errors: validation - train
        train = series(served.client, run.info.run_id, f"while_training/{name}")
        val = series(served.client, run.info.run_id, f"while_training/val_{name}")
        assert series(served.client, run.info.run_id, f"while_training/gap_{name}") == pytest.approx(
            [v - tr for tr, v in zip(train, val, strict=True)], abs=1e-9
        )
        assert run.data.metrics[f"gap_{name}"] == pytest.approx(
            flat_attrs(t.user_attrs)[f"gap_{name}"], rel=1e-12
        )
    assert run.data.metrics["objective"] == pytest.approx(t.value, rel=1e-12)


@pytest.mark.slow
def test_server_parent_run_and_artifacts(served, tmp_path):
    parent = served.parent
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_trial"] == 1
    assert (parent.data.metrics["n_complete"], parent.data.metrics["n_fail"]) == (1, 1)
    paths = {a.path for a in served.client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "config.yaml", "learning_curves.png", "plots"} <= paths
    plots = {a.path for a in served.client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/param_importances.png" not in plots  # needs two complete trials: skipped
    # tracking.plotlyjs=embed: each plot also as HTML that holds plotly.js (works offline)
    assert {"plots/optimization_history.png", "plots/optimization_history.html"} <= plots
    html = Path(served.client.download_artifacts(parent.info.run_id, "plots/slice.html", str(tmp_path)))
    text = html.read_text()
    assert len(text) > 1_000_000 and 'src="https://cdn.plot.ly' not in text
    local = Path(served.client.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path)))
    config = yaml.safe_load(local.read_text())
    assert config["study"]["storage"].endswith("optuna.db?password=***")
    assert config["tracking"]["uri"] == f"http://user:***@127.0.0.1:{served.server.port}"


@pytest.mark.slow
def test_credentials_never_reach_params_tags_or_output(served):
    runs = [served.parent, *served.children.values()]
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if SECRET in v], run.info.run_name
    assert served.parent.data.tags["tuning.storage"].endswith("optuna.db?password=***")
    assert SECRET not in served.output
    exp = served.client.get_experiment_by_name("diabetes")
    assert f"open http://user:***@127.0.0.1:{served.server.port}/#/experiments/{exp.experiment_id}/runs" in (
        served.output
    )


# --- several workers on one study ----------------------------------------------------------


@pytest.mark.slow
def test_two_workers_started_together_share_one_experiment_and_one_parent_run(tmp_path):
    """Both create the MLflow store, the experiment and the parent run at the same moment."""
    cmd = [sys.executable, "-m", "tuning", "sweep", "data.n_samples=400", "training.max_epochs=2",
           "study.n_trials=4", "training.threads=1"]  # fmt: skip
    workers = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in "ab"
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert not [line for out in outputs for line in out.splitlines() if "not fully logged" in line]
    client = client_for(f"sqlite:///{tmp_path / 'experiments' / 'mlflow.db'}")
    parents = sweep_runs(client, "plants")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    import optuna

    study = optuna.load_study(
        study_name="plants", storage=f"sqlite:///{tmp_path}/experiments/plants/optuna.db"
    )
    children = trial_runs(client, "plants")
    assert sorted(children) == sorted(t.number for t in study.trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parents[0].info.run_id}


def test_workers_that_each_created_a_parent_run_all_keep_the_first(tmp_path):
    """The narrow race the lock does not close: two workers both found no parent and made one."""
    from tuning.tracking.client import connect, experiment_id
    from tuning.tracking.shared import _own_or_first_parent

    client = connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = experiment_id(client, "race")
    where = "tags.`tuning.role` = 'sweep' and tags.`tuning.study` = 'race'"
    tags = {"tuning.role": "sweep", "tuning.study": "race"}
    first = client.create_run(exp, run_name="sweep", tags=tags, start_time=1000)
    second = client.create_run(exp, run_name="sweep", tags=tags, start_time=2000)
    assert _own_or_first_parent(client, exp, where, second).info.run_id == first.info.run_id
    assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"
    assert _own_or_first_parent(client, exp, where, first).info.run_id == first.info.run_id
    assert [r.info.run_id for r in client.search_runs([exp], where)] == [first.info.run_id]
