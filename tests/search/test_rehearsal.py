"""Rehearsal mode (training.simulate_epoch_seconds): the real sweep, no TensorFlow.

A rehearsal runs the sweep's own code path (config, data, sampler, pruner, study, MLflow,
best.yaml) with each epoch a sleep and a made-up value: these tests check it imports no
TensorFlow, says so first and on its MLflow runs, prunes, leaves trials and runs shaped as a
real sweep's, and that `tuning train` refuses its best.yaml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, cli

from tuning.search.engines.optuna_study import load_summary

pytestmark = pytest.mark.slow

REHEARSE = ("training.simulate_epoch_seconds=0.01",)
# In a fresh interpreter: the sweep, then what it imported.
SWEEP_THEN_MODULES = """
import sys
from tuning.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code or 0
print("exit", code, "imported:", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def mlflow_runs(uri: str, study: str) -> tuple[object, list[object]]:
    """The sweep's parent run and its trials' child runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(study)
    parent = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'sweep'")
    children = client.search_runs([exp.experiment_id], "tags.`tuning.role` = 'trial'")
    assert len(parent) == 1
    return parent[0], children


def test_a_rehearsal_imports_no_tensorflow_prunes_tags_and_is_refused_by_train(in_tmp, capsys):
    uri = f"sqlite:///{in_tmp}/experiments/mlflow.db"
    args = [
        "sweep",
        *REHEARSE,
        "data.n_samples=400",
        "training.max_epochs=5",
        "study.n_trials=6",
        "pruner=successive_halving",
        "tracking=mlflow",
        f"tracking.uri={uri}",
        "tracking.learning_curves=0",
    ]
    done = subprocess.run(
        [sys.executable, "-c", SWEEP_THEN_MODULES, *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert "exit 0 imported: []" in done.stdout, out[-3000:]
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line.strip()]
    assert "rehearsal: training.simulate_epoch_seconds=0.01: no model is trained" in lines[0], out[:2000]

    study = load_summary(f"sqlite:///{in_tmp}/experiments/plants/optuna.db", "plants")
    states = [t.state for t in study.trials]
    assert len(states) == 6 and "PRUNED" in states and "COMPLETE" in states, states
    pruned = [t for t in study.trials if t.state == "PRUNED"]
    assert all(t.user_attrs["epochs_trained"] == len(t.intermediate_values) for t in pruned)

    parent, children = mlflow_runs(uri, "plants")
    assert parent.info.status == "FINISHED" and parent.data.tags["tuning.rehearsal"] == "true"
    assert len(children) == 6 and all(c.data.tags["tuning.rehearsal"] == "true" for c in children)

    best = Path("experiments/plants/best.yaml").read_text()
    assert "REHEARSAL" in best and "rehearsal: true" in best
    assert cli(["train", "study=plants", "tracking=none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: best.rehearsal: ") and "comes from a rehearsal" in err[0]
    )


def test_the_same_params_give_the_same_values(in_tmp):
    args = [*TINY, *REHEARSE, "study.n_trials=3", "pruner=none", "sampler=random"]
    assert cli(["sweep", *args]) == 0
    assert cli(["sweep", *args, "study.name=again"]) == 0
    first = load_summary(f"sqlite:///{in_tmp}/experiments/plants/optuna.db", "plants").trials
    second = load_summary(f"sqlite:///{in_tmp}/experiments/again/optuna.db", "again").trials
    assert [t.params for t in first] == [t.params for t in second]  # the seeded sampler
    assert [t.value for t in first] == [t.value for t in second]
    assert len({t.value for t in first}) == 3  # other params, other values


def test_trials_and_mlflow_runs_are_shaped_as_a_real_sweeps(in_tmp):
    uri = f"sqlite:///{in_tmp}/experiments/mlflow.db"
    common = [*TINY, "study.n_trials=2", "pruner=none", "tracking=mlflow", f"tracking.uri={uri}"]
    assert cli(["sweep", *common, "study.name=real"]) == 0
    assert cli(["sweep", *common, *REHEARSE, "study.name=rehearsal"]) == 0
    shapes = {}
    for name in ("real", "rehearsal"):
        trials = load_summary(f"sqlite:///{in_tmp}/experiments/{name}/optuna.db", name).trials
        parent, children = mlflow_runs(uri, name)
        shapes[name] = {
            "states": [t.state for t in trials],
            "attrs": [sorted(t.user_attrs) for t in trials],
            "epochs": [
                sorted(t.intermediate_values) == list(range(len(t.intermediate_values))) for t in trials
            ],
            "parent_status": parent.info.status,
            "parent_params": sorted(parent.data.params),
            "parent_tags": sorted(k for k in parent.data.tags if k != "tuning.rehearsal"),
            "child_metrics": sorted({k for c in children for k in c.data.metrics}),
            "child_params": sorted({k for c in children for k in c.data.params}),
            "child_tags": sorted({k for c in children for k in c.data.tags if k != "tuning.rehearsal"}),
            "child_status": sorted(c.info.status for c in children),
        }
    assert shapes["rehearsal"] == shapes["real"]


def test_a_custom_model_is_refused_in_one_line(in_tmp, capsys):
    Path("rehearsal_models.py").write_text("def build(hp):\n    raise AssertionError('never built')\n")
    code = cli(["sweep", *TINY, *REHEARSE, "model=custom", "model.build=rehearsal_models.build"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: training.simulate_epoch_seconds: a rehearsal simulates the built-in MLP, not model=custom; "
        "allowed: model=mlp, or null"
    ]
