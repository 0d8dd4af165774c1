"""`stop=converged` on a real tiny sweep whose search space is nearly one point: the best stops
improving, the sweep stops before study.n_trials with its reason, exit 0, and a resume says so."""

from __future__ import annotations

import re

import mlflow
import optuna
import pytest
from conftest import TINY, cli

pytestmark = pytest.mark.slow

# Every dimension fixed but a learning rate within 1% of 0.01: trials differ only by their seed.
NEARLY_ONE_POINT = (
    "search_space.n_layers=1",
    "search_space.units=8",
    "search_space.activation=relu",
    "search_space.dropout=0.0",
    "search_space.learning_rate={type:float,low:0.01,high:0.0101}",
    "search_space.batch_size=64",
    "search_space.epochs=20",
    "search_space.optimizer=adam",
    "search_space.loss=binary_crossentropy",
)
ARGS = (*TINY, *NEARLY_ONE_POINT, "training.max_epochs=1", "pruner=none", "study.n_trials=12")
STOP = ("stop=converged", "stop.patience=1", "stop.min_trials=2")
LINE = re.compile(
    r"stop=converged: no improvement over the best \((?P<value>[\d.]+), trial (?P<best>\d+)\) in the last "
    r"(?P<since>\d+) completed trials? \(patience 1, min 2 completed\); stopped after (?P<done>\d+) of 12 "
    r"finished trials"
)


def load() -> optuna.Study:
    return optuna.load_study(study_name="plants", storage="sqlite:///experiments/plants/optuna.db")


def test_a_converged_sweep_stops_early_says_why_exits_0_and_stays_stopped(in_tmp, capsys):
    assert cli(["sweep", *ARGS, *STOP, "tracking=mlflow"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    found = LINE.search(text)
    assert found is not None, text
    assert "error" not in out.err and "run the same command to add the rest" not in text
    study = load()
    done = len(study.trials)
    assert 2 <= done < 12 and int(found["done"]) == done
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    best = study.best_trial
    assert int(found["best"]) == best.number and float(found["value"]) == pytest.approx(best.value, abs=1e-4)
    assert int(found["since"]) == 1 == sum(t.number > best.number for t in study.trials)
    stopped = study.user_attrs["stopped"]
    assert stopped["rule"] == "converged" and stopped["line"] == found[0]
    assert stopped["best"] == best.number and stopped["trials"] == done
    client = mlflow.MlflowClient("sqlite:///experiments/mlflow.db")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("plants").experiment_id], "tags.`tuning.role` = 'sweep'"
    )
    assert run.data.tags["tuning.stop"] == found[0] and run.info.status == "FINISHED"

    # The same command again: still converged, nothing runs, exit 0.
    assert cli(["sweep", *ARGS, *STOP]) == 0
    out = capsys.readouterr()
    assert "nothing to run: the study had converged already" in out.out + out.err
    assert len(load().trials) == done

    # A higher patience searches on until that one is spent too.
    assert cli(["sweep", *ARGS, "stop=converged", "stop.patience=2", "stop.min_trials=2"]) == 0
    study = load()
    assert len(study.trials) > done
    stopped = study.user_attrs["stopped"]
    assert len(study.trials) == 12 or (
        "(patience 2, " in stopped["line"] and stopped["trials"] == len(study.trials)
    )
