"""The registered final model is the whole pipeline: MLflow loads and serves it (raw rows in,
`tuning predict`'s answers out) in processes that never import `tuning`, and finds it by its
test metrics. Real models (a tiny sweep, then `tuning train`), a real `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli, free_port, stop_process_group

# Each study: its sweep's data arguments, the target, and new raw rows (a gap, an unseen category).
STUDIES = {
    "plants": (["data.target=species"], "species"),
    "heights": (["data.target=height"], "height"),
}
ROWS = {
    "plants": "height,branches,soil\n50.0,3,clay\n,20,peat\n120.0,14,\n",
    "heights": "branches,soil,species\n3,clay,A\n20,peat,B\n,,A\n",
}


def plants_table(n: int = 300) -> pd.DataFrame:
    from tuning.data.plants import load_plants

    rng = np.random.default_rng(0)
    frame = load_plants(n, seed=0)
    frame.insert(2, "soil", rng.choice(["clay", "sand", "loam"], n).astype(object))
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two registered final models in one MLflow store: 'plants' (binary) and 'heights' (regression)."""
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        plants_table().to_csv("plants.csv", index=False)
        for study, (data, _) in STUDIES.items():
            sweep = ["data=csv", "data.path=plants.csv", *data, f"study.name={study}", "study.n_trials=1"]
            assert cli(["sweep", *sweep, "training.max_epochs=2", "pruner=none"]) == 0
            assert cli(["train", f"study={study}"]) == 0
            (root / f"{study}_rows.csv").write_text(ROWS[study])
            rows = f"data.path={study}_rows.csv"
            assert cli(["predict", f"study={study}", rows, f"output={study}_expected.csv"]) == 0
    return root


def store(root: Path) -> str:
    return f"sqlite:///{root / 'experiments' / 'mlflow.db'}"


def expected(root: Path, study: str) -> pd.DataFrame:
    """`tuning predict`'s added columns for the study's rows."""
    out = pd.read_csv(root / f"{study}_expected.csv")
    return out[[c for c in out.columns if c.startswith(("predicted_", "probability_"))]]


def same(answer: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal labels; probabilities and values equal to float32 rounding (the network runs on
    another batch shape in the server, which may pick other CPU kernels)."""
    assert list(answer.columns) == list(want.columns)
    for name in want.columns:
        if pd.api.types.is_numeric_dtype(want[name]):
            np.testing.assert_allclose(answer[name].astype(float), want[name], rtol=1e-5, atol=1e-6)
        else:
            assert list(answer[name]) == list(want[name])


# --- `tuning serve`: checks before anything starts --------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: study: is required: tuning serve study=NAME"),
        (["study=plants", "--port", "http"], "error: --port: 'http'; must be a port number, 1 to 65535"),
        (["study=plants", "--port"], "error: --port: needs a value"),
        (["plants"], "error: plants: unknown argument; allowed: study=..., tracking.uri=..."),
        (["study=plants"], "error: study: no MLflow store experiments/mlflow.db; train the model first"),
    ],
)
def test_serve_refuses_bad_arguments_in_one_line(in_tmp, capsys, args, message):
    assert cli(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_serve_without_a_champion_says_how_to_get_one(in_tmp, capsys):
    from tuning.tracking.client import connect

    connect("sqlite:///experiments/mlflow.db")  # an empty store
    capsys.readouterr()  # what making the store printed (MLflow's own notes) is not the command's
    assert cli(["serve", "study=plants"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: study: no model 'plants' with alias 'champion' in sqlite:///{in_tmp}/experiments/mlflow.db; "
        "train one: tuning train study=plants\n"
    )


# --- the served model -------------------------------------------------------------------------


def post(url: str, body: str, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, body.encode(), {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, limit: float = 240) -> None:
    """Poll /ping; a server that exits or stays silent fails the test, with its log."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"the server did not answer /ping within {limit} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("study", list(STUDIES))
def test_the_served_champion_answers_raw_rows_like_tuning_predict(trained, study):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = trained / f"serve_{study}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuning", "serve", f"study={study}", "--port", str(port)],
            cwd=trained, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
    try:
        wait_until_up(proc, url, log)
        assert log.read_text().startswith(
            f"serving models:/{study}@champion (version 1) at {url}/invocations"
        )
        rows = pd.read_csv(trained / f"{study}_rows.csv")
        want = expected(trained, study)
        split = json.loads(rows.to_json(orient="split", index=False))
        bodies = [
            (rows.to_csv(index=False), "text/csv"),
            (json.dumps({"dataframe_split": split}), "application/json"),
            (
                json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}),
                "application/json",
            ),
        ]
        for body, content_type in bodies:
            status, answer = post(f"{url}/invocations", body, content_type)
            assert status == 200, answer
            same(pd.DataFrame(answer["predictions"]), want)
        refused(url, rows)
    finally:
        stop_process_group(proc)


def refused(url: str, rows: pd.DataFrame) -> None:
    """Rows `tuning predict` refuses get a 400 naming the problem, no traceback."""
    number = next(c for c in rows.columns if c in ("height", "branches"))
    infinite = rows.head(1).astype({number: float}).assign(**{number: float("inf")})
    status, answer = post(f"{url}/invocations", infinite.to_csv(index=False), "text/csv")
    # What the signature cannot say is our pipeline's check: tuning predict's own reason.
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer["message"].endswith(
        f"Error: column '{number}' is a number column but has an infinite value (row 1: inf); "
        "allowed: numbers, or an empty cell for a missing value"
    )
    assert "stack_trace" not in answer
    # Text in a number column, a missing column: MLflow's schema check answers first (400).
    text = json.loads(rows.head(1).assign(**{number: "tall"}).to_json(orient="records"))
    status, answer = post(f"{url}/invocations", json.dumps({"dataframe_records": text}), "application/json")
    assert status == 400 and f"column {number}" in answer["message"] and "tall" in answer["message"]
    missing = json.loads(rows.drop(columns=[number]).to_json(orient="split", index=False))
    status, answer = post(f"{url}/invocations", json.dumps({"dataframe_split": missing}), "application/json")
    assert status == 400 and f"missing inputs ['{number}']" in answer["message"]


# --- loaded without tuning, found by its metrics ----------------------------------------------

FRESH = """
import json, sys
import keras, mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
rows = pd.read_csv(sys.argv[3])
numbers = [c.name for c in mlflow.models.get_model_info(sys.argv[2]).signature.inputs if c.type.name == "double"]
out = mlflow.pyfunc.load_model(sys.argv[2]).predict(rows.astype({c: float for c in numbers}))
network = keras.saving.load_model(sys.argv[4])
print(json.dumps({"predictions": out.to_dict(orient="list"), "layers": len(network.layers),
                  "tuning": sorted(m for m in sys.modules if m == "tuning" or m.startswith("tuning."))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("study", list(STUDIES))
def test_pyfunc_predicts_like_tuning_predict_in_a_process_without_tuning(trained, study):
    network = trained / "experiments" / study / "final" / "model.keras"
    done = subprocess.run(
        [sys.executable, "-c", FRESH, store(trained), f"models:/{study}@champion",
         str(trained / f"{study}_rows.csv"), str(network)],
        cwd=trained, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tuning"] == []  # neither the pyfunc nor the Keras file needed tuning
    assert result["layers"] >= 2
    same(pd.DataFrame(result["predictions"]), expected(trained, study))


@pytest.mark.slow
def test_search_logged_models_finds_the_final_model_by_its_test_metrics(trained):
    import mlflow

    mlflow.set_tracking_uri(store(trained))
    meta = json.loads((trained / "experiments" / "plants" / "final" / "meta.json").read_text())
    experiment = mlflow.get_experiment_by_name("plants").experiment_id
    found = mlflow.search_logged_models(
        experiment_ids=[experiment],
        filter_string="metrics.test_accuracy >= 0",
        order_by=[{"field_name": "metrics.test_log_loss", "ascending": True}],
        output_format="list",
    )
    assert [m.model_id for m in found] == [meta["mlflow"]["model_id"]]
    model = found[0]
    assert model.source_run_id == meta["mlflow"]["run_id"]
    metrics = {m.key: m.value for m in model.metrics}
    for name, value in meta["metrics"]["test"].items():
        assert metrics[f"test_{name}"] == pytest.approx(value)
    run = mlflow.get_run(meta["mlflow"]["run_id"])
    assert model.tags["tuning.best_trial_run_id"] == run.data.tags["tuning.best_trial_run_id"]
    assert model.tags["tuning.sweep_run_id"] == run.data.tags["tuning.sweep_run_id"]
    assert model.params["learning_rate"] == run.data.params["learning_rate"]
