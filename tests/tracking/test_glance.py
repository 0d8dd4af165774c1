"""MLflow at a glance (issue 32, item 5), checked through MlflowClient on a real tiny sweep and
its final model: the best trial named, linked and measured in the sweep run's and the
experiment's description, the best child marked by name and tag, per-epoch values under a
prefix that sorts after every headline metric, and a registered model that says what it is.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
from conftest import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SWEEP = ("data.n_samples=400", "training.max_epochs=3", "study.n_trials=3", "seed=1", "pruner=none")
EPOCH = "while_training/"


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tracked sweep of plants (3 trials) and `tuning train` on it, in one folder."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("glance")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert cli(["sweep", *SWEEP]) == 0
        assert cli(["train", "study=plants"]) == 0
    client = MlflowClient(f"sqlite:///{root / 'experiments' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("plants")
    runs = client.search_runs([experiment.experiment_id])
    by_role = {r.data.tags.get("tuning.role"): r for r in runs}
    return SimpleNamespace(
        root=root,
        client=client,
        experiment=experiment,
        parent=by_role["sweep"],
        final=by_role["final"],
        trials=[r for r in runs if r.data.tags.get("tuning.role") == "trial"],
        meta=json.loads((root / "experiments" / "plants" / "final" / "meta.json").read_text()),
    )


@pytest.mark.slow
def test_the_best_trial_is_named_linked_and_measured_where_the_ui_opens(glance):
    parent, exp_id = glance.parent, glance.experiment.experiment_id
    marked = [r for r in glance.trials if r.data.tags.get("tuning.best") == "true"]
    assert len(marked) == 1
    best = marked[0]
    number = int(best.data.tags["tuning.trial"])
    assert best.info.run_name == f"trial-{number:04d} ★ best"
    assert parent.data.tags["tuning.best_trial_run_id"] == best.info.run_id
    assert parent.data.tags["tuning.best_trial"] == str(number)
    m = best.data.metrics
    line = (
        f"**Best: trial {number}** ([trial-{number:04d} ★ best](#/experiments/{exp_id}/runs/{best.info.run_id})): "
        f"val_log_loss **{parent.data.metrics['best_objective']:.4f}**, "
        f"gap_log_loss {m['gap_log_loss']:+.4f} (positive: overfits), "
        f"best epoch {int(m['best_epoch'])} of {int(m['epochs_trained'])} trained"
    )
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(line + "\n\n") and "Sweep of study 'plants'" in note
    assert note.count("**Best: trial") == 1  # the line was replaced as the best moved, not stacked
    about = glance.experiment.tags["mlflow.note.content"]
    assert about.startswith(line + "\n\n") and "Study 'plants': binary task" in about


@pytest.mark.slow
def test_per_epoch_values_sort_after_every_headline_metric(glance):
    for run in glance.trials:
        keys = list(run.data.metrics)
        epoch = [k for k in keys if k.startswith(EPOCH)]
        headline = [k for k in keys if not k.startswith(EPOCH)]
        assert epoch and headline and not any(k.startswith("epoch/") for k in keys)
        for order in (str, str.casefold):  # code point order, and the case-insensitive one
            assert max(map(order, headline)) < min(map(order, epoch)), run.info.run_name
    best = next(r for r in glance.trials if r.data.tags.get("tuning.best") == "true")
    assert {"val_log_loss", "gap_log_loss", f"{EPOCH}val_log_loss", f"{EPOCH}gap_log_loss"} <= set(
        best.data.metrics
    )
    # The headline has one value (the restored weights'); the history is its own series.
    client, run_id = glance.client, best.info.run_id
    assert len(client.get_metric_history(run_id, "val_log_loss")) == 1
    steps = client.get_metric_history(run_id, f"{EPOCH}val_log_loss")
    assert [s.step for s in steps] == list(range(1, int(best.data.metrics["epochs_trained"]) + 1))
    # The final run's learning curves too: under the prefix, beside its single-valued headline.
    final = glance.final
    assert f"{EPOCH}loss" in final.data.metrics and "loss" not in final.data.metrics
    assert len(client.get_metric_history(final.info.run_id, f"{EPOCH}loss")) == glance.meta["epochs"]


@pytest.mark.slow
def test_the_registered_model_says_what_it_is(glance):
    import mlflow

    client, meta = glance.client, glance.meta
    version = client.get_model_version_by_alias("plants", "champion")
    registered = client.get_registered_model("plants")
    trial = glance.final.data.tags["tuning.best_trial"]
    test = meta["metrics"]["test"]
    for text in (registered.description, version.description):
        assert text.startswith(
            f"**Study 'plants', version {version.version}**: best trial {trial} (val_log_loss "
        )
        assert f"log_loss {test['log_loss']:.4f}" in text and f"accuracy {test['accuracy']:.4f}" in text
        assert f"for {meta['epochs']} epochs" in text
    mlflow.set_tracking_uri(glance.client.tracking_uri)
    signature = mlflow.models.get_model_info("models:/plants@champion").signature
    columns = [c["name"] for c in signature.inputs.to_dict()]
    assert columns == list(meta["columns"]) and all(columns)
    assert f"Input columns: {', '.join(columns)}" in registered.description


def test_a_new_best_replaces_the_line_before_it():
    from tuning.tracking.content import with_best

    first = with_best("Sweep of study 'plants'.", "**Best: trial 1** (a)")
    assert first == "**Best: trial 1** (a)\n\nSweep of study 'plants'."
    assert with_best(first, "**Best: trial 7** (b)") == "**Best: trial 7** (b)\n\nSweep of study 'plants'."
    assert with_best("", "**Best: trial 2** (c)") == "**Best: trial 2** (c)"
