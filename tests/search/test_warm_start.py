"""`warm_start.from` on real tiny sweeps: an earlier study on the same data is copied in (once,
its points replayed through the new space), one on other data or a best.yaml is queued first;
both are marked in the trials table and on MLflow, and a bad source is refused in one line."""

from __future__ import annotations

import re
import shutil

import mlflow
import optuna
import pytest
from conftest import cli

from tuning.results.table import trials_table
from tuning.search.engines.optuna_study import load_summary

pytestmark = pytest.mark.slow

# Rehearsals (each epoch a short sleep and a made-up value, no TensorFlow): what is tested here
# is which trials the study holds and runs first, not what they learn.
TINY = (
    "data.n_samples=200",
    "tracking=none",
    "pruner=none",
    "training.max_epochs=2",
    "training.simulate_epoch_seconds=0.01",
)
NARROW = "search_space.units={type:int,low:8,high:64,log:true}"  # the source searched 8-128


def study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///experiments/{name}/optuna.db")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An earlier study 'src' on plants (5 trials), made once: each test copies its folder."""
    folder = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert cli(["sweep", *TINY, "study.name=src", "study.n_trials=5"]) == 0
    return folder / "experiments" / "src"


@pytest.fixture
def with_source(in_tmp, source):
    shutil.copytree(source, in_tmp / "experiments" / "src")
    return in_tmp


def inside(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 64 for k, v in trial.params.items() if k.startswith("units_"))


def test_same_data_adds_the_trials_once_and_they_do_not_count(with_source, capsys):
    earlier = study("src").trials
    args = ["sweep", *TINY, "study.name=new", "warm_start.from=src", NARROW]
    assert cli([*args, "study.n_trials=1"]) == 0
    text = "".join(capsys.readouterr())
    fits = [t for t in earlier if inside(t)]
    assert 0 < len(fits) < len(earlier)  # both kinds: this seed's source has each
    line = re.search(
        r"warm start from src: (\d+) trials? added(?:, (\d+) skipped \(outside the space: units_\d=\d+)?",
        text,
    )
    assert line is not None, text
    assert int(line[1]) == len(fits) and int(line[2] or 0) == len(earlier) - len(fits)
    added = [t for t in study("new").trials if "warm_start_trial" in t.user_attrs]
    assert [(t.user_attrs["warm_start_trial"], t.value, t.params) for t in added] == [
        (t.number, t.value, t.params) for t in fits
    ]
    assert all(t.user_attrs["warm_start"] == "src" and t.state.name == "COMPLETE" for t in added)
    # A copy keeps its seed and measurements, not the earlier run's worker or sampler stream.
    assert all("seed" in t.user_attrs and "val_log_loss" in t.user_attrs for t in added)
    assert not any({"worker", "worker_pidns", "sampler_seed"} & t.user_attrs.keys() for t in added)
    # study.n_trials=1 trained one trial of its own: the copies ran in the earlier study.
    assert len(study("new").trials) == len(fits) + 1

    # A resume adds nothing again and trains the next trial; with MLflow on, the copies get
    # child runs marked with their source (the runs an earlier run did not log are back-filled).
    assert cli([*args, "study.n_trials=2", "tracking=mlflow", "tracking.learning_curves=0"]) == 0
    assert "warm start from" not in "".join(capsys.readouterr())
    client = mlflow.MlflowClient(
        f"sqlite:///{with_source / 'experiments' / 'mlflow.db'}"
    )  # absolute: MLflow caches a store per URI
    experiment = client.get_experiment_by_name("new").experiment_id
    runs = client.search_runs([experiment], "tags.`tuning.warm_start` = 'src'")
    assert sorted(r.info.run_name[:10] for r in runs) == [f"trial-{t.number:04d}" for t in added]
    trials = study("new").trials
    assert len(trials) == len(fits) + 2 and sum("warm_start" in t.user_attrs for t in trials) == len(fits)
    marks = trials_table(load_summary("sqlite:///experiments/new/optuna.db", "new")).column("warm_start")
    assert sorted(m for m in marks if m) == ["added"] * len(fits)


def test_other_data_and_a_best_yaml_queue_their_top_configurations_first(with_source, capsys):
    ranked = sorted(study("src").trials, key=lambda t: t.value)
    other = [
        "sweep",
        *TINY,
        "data.n_samples=240",
        "study.name=other",
        NARROW,
        "tracking=mlflow",
        "tracking.learning_curves=0",
    ]
    assert cli([*other, "warm_start.from=src", "warm_start.top=2", "study.n_trials=2"]) == 0
    text = "".join(capsys.readouterr())
    assert "warm start from src (other data: data.n_samples: 200 -> 240): 2 configurations queued" in text
    trials = study("other").trials
    for earlier, queued in zip(ranked, trials, strict=False):  # a value outside the space is drawn anew
        kept = {k: v for k, v in earlier.params.items() if not (k.startswith("units_") and v > 64)}
        assert kept.items() <= queued.params.items() and queued.user_attrs["warm_start"] == "src"
    client = mlflow.MlflowClient(
        f"sqlite:///{with_source / 'experiments' / 'mlflow.db'}"
    )  # absolute: MLflow caches a store per URI
    experiment = client.get_experiment_by_name("other").experiment_id
    runs = client.search_runs([experiment], "tags.`tuning.warm_start` = 'src'")
    assert sorted(r.info.run_name[:10] for r in runs) == ["trial-0000", "trial-0001"]
    marks = trials_table(load_summary("sqlite:///experiments/other/optuna.db", "other")).column("warm_start")
    assert marks == ["queued", "queued"]

    best = with_source / "experiments" / "src" / "best.yaml"
    assert cli(["sweep", *TINY, "study.name=fromyaml", f"warm_start.from={best}", "study.n_trials=1"]) == 0
    assert f"warm start from {best} (a best.yaml): 1 configuration queued" in "".join(capsys.readouterr())
    (first,) = study("fromyaml").trials
    assert first.params == study("src").best_trial.params and first.user_attrs["warm_start"] == str(best)


@pytest.mark.parametrize(
    ("override", "text"),
    [
        (
            "warm_start.from=nosuch",
            "error: warm_start.from: no study 'nosuch' in experiments/nosuch/optuna.db",
        ),
        ("warm_start.from=elsewhere.yaml", "error: warm_start.from: cannot read elsewhere.yaml"),
        ("warm_start.from=colour.yaml", "error: warm_start.from: 'colour.yaml' shares no dimension"),
        (
            "warm_start.from=src engine=keras_tuner",
            "error: warm_start.from: engine=keras_tuner cannot be seeded",
        ),
    ],
)
def test_a_source_that_cannot_seed_the_study_is_refused_in_one_line(in_tmp, capsys, override, text):
    (in_tmp / "colour.yaml").write_text("search_space: {colour: red, n_layers: 2}\n")
    args = ["sweep", *TINY, "study.name=new", "search_space.n_layers=2", *override.split()]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(text) and "\n" not in err, err
    assert not (in_tmp / "experiments" / "new").exists()  # refused before anything was written
