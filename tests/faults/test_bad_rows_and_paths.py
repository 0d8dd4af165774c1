"""`tuning predict` refuses instead of guessing, and paths that cannot be written are one line.

A real final model (one tiny sweep, then `tuning train`) is fed rows with infinities, text in
a number column and ragged lines, and is loaded from damaged files. Each refusal is one line
naming the column, row or file, exit 2, and leaves every file as it was, with no output written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, cli

CSV_SWEEP = ["sweep", "data=csv", "data.path=plants.csv", "data.target=species", "tracking=none"]
ROWS = "height,branches,soil\n120.5,12,clay\n80.0,3,sand\n150.2,20,loam\n"


def plants_csv(path: Path, n: int = 300) -> None:
    from tuning.data.plants import load_plants

    frame = load_plants(n, seed=0)
    frame.insert(2, "soil", np.random.default_rng(0).choice(["clay", "sand", "loam"], n))
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding a real final model at experiments/plants/final."""
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        plants_csv(root / "plants.csv")
        sweep = ["data=csv", "data.path=plants.csv", "data.target=species", "study.n_trials=1"]
        assert cli(["sweep", *sweep, "training.max_epochs=2", "tracking=none"]) == 0
        assert cli(["train", "study=plants", "tracking=none"]) == 0
    return root


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(folder: Path, capsys, args: list[str]) -> str:
    """Run a command that must be refused: exit 2, one error line, no file changed or added."""
    capsys.readouterr()
    before = files_under(folder)
    assert cli(args) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert files_under(folder) == before
    return err


def predict(rows: Path, *extra: str) -> list[str]:
    return ["predict", "study=plants", f"data.path={rows}", *extra]


# --- the rows ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            ROWS.replace("80.0,3", "inf,3"),
            "error: data.path: column 'height' is a number column but has an infinite value (row 2: ",
        ),
        (
            ROWS.replace("80.0,3", "-inf,3").replace("150.2,20", "1e999,20"),
            "an infinite value (row 2: -inf, row 3: inf)",
        ),
        (
            ROWS.replace("80.0,3", "tall,3"),
            "error: data.path: column 'height' is a number column but has text that is not a number "
            "(row 2: 'tall'); allowed: numbers, or an empty cell for a missing value",
        ),
        (
            ROWS.replace("120.5,12,clay", "120.5,12,clay,7"),
            "rows.csv: line 2 has 4 values but the header has 3",
        ),
        (ROWS.replace("150.2,20,loam", "150.2,loam"), "rows.csv: line 4 has 2 values but the header has 3"),
    ],
    ids=["inf", "inf-both-signs", "text-in-number-column", "one-value-too-many", "one-value-too-few"],
)
def test_predict_refuses_rows_it_would_have_to_guess(trained, monkeypatch, capsys, rows, expected):
    monkeypatch.chdir(trained)
    (trained / "rows.csv").write_text(rows)
    err = refused(trained, capsys, predict(trained / "rows.csv"))
    assert expected in err
    assert not (trained / "rows.predictions.csv").exists()


@pytest.mark.slow
def test_predict_still_imputes_empty_cells_as_in_training(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    (trained / "gaps.csv").write_text(ROWS.replace("80.0,3,sand", ",,"))
    assert cli(predict(trained / "gaps.csv")) == 0
    out = pd.read_csv(trained / "gaps.predictions.csv")
    assert len(out) == 3 and out["predicted_species"].isin(["A", "B"]).all()
    assert out["height"].isna().tolist() == [False, True, False]


@pytest.mark.slow
def test_predict_writes_the_rows_back_as_they_were_read(trained, monkeypatch, capsys):
    """A whole-number column with a gap stays whole numbers (12, not 12.0), the gap stays empty."""
    monkeypatch.chdir(trained)
    (trained / "gaps.csv").write_text(ROWS.replace("80.0,3,sand", "80.0,,sand"))
    assert cli(predict(trained / "gaps.csv")) == 0
    lines = (trained / "gaps.predictions.csv").read_text().splitlines()
    assert lines[0].startswith("height,branches,soil,predicted_species,probability_A")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        row.split(",") for row in ROWS.replace("80.0,3,sand", "80.0,,sand").strip().splitlines()[1:]
    ]


# --- the files --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "damage", "expected"),
    [
        (
            "model.keras",
            lambda b: b[: len(b) // 2],
            "model.keras cannot be loaded (not a readable .keras archive",
        ),
        (
            "model.keras",
            lambda b: b"not a zip",
            "model.keras cannot be loaded (not a readable .keras archive",
        ),
        ("preprocessing.joblib", lambda b: b[: len(b) // 2], "preprocessing.joblib cannot be loaded ("),
        ("preprocessing.joblib", lambda b: b"garbage" * 10, "preprocessing.joblib cannot be loaded ("),
    ],
    ids=["model-cut", "model-garbage", "preprocessing-cut", "preprocessing-garbage"],
)
def test_a_damaged_model_file_is_one_line_naming_it(trained, monkeypatch, capsys, name, damage, expected):
    monkeypatch.chdir(trained)
    (trained / "rows.csv").write_text(ROWS)
    path = trained / "experiments" / "plants" / "final" / name
    good = path.read_bytes()
    path.write_bytes(damage(good))
    try:
        err = refused(trained, capsys, predict(trained / "rows.csv"))
    finally:
        path.write_bytes(good)
    assert err.startswith("error: model: ") and expected in err
    assert "train the model again with `tuning train`, or restore the folder from a backup" in err
    assert not (trained / "rows.predictions.csv").exists()


@pytest.mark.slow
def test_predict_output_that_cannot_be_a_file_is_refused_before_loading(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    (trained / "rows.csv").write_text(ROWS)
    (trained / "out").mkdir()
    err = refused(trained, capsys, predict(trained / "rows.csv", f"output={trained / 'out'}"))
    assert (
        err
        == f"error: output: {trained / 'out'} is a folder; give a file path, e.g. {trained / 'out' / 'predictions.csv'}\n"
    )

    err = refused(trained, capsys, predict(trained / "rows.csv", f"output={trained / 'rows.csv' / 'p.csv'}"))
    assert err.startswith(f"error: output: cannot create the folder {trained / 'rows.csv'}: ")
    assert "is a file; give a folder path" in err


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a folder this process cannot write")
def test_predict_output_in_a_read_only_folder_is_refused(in_tmp, capsys):
    (in_tmp / "rows.csv").write_text(ROWS)
    err = refused(
        in_tmp, capsys, ["predict", "model=nowhere", "data.path=rows.csv", "output=/proc/sys/p.csv"]
    )
    assert err.startswith("error: output: cannot write in /proc/sys (read-only, or no permission)")


# --- training tables and folders -------------------------------------------------------------


def test_sweep_under_a_path_that_is_a_file_writes_nothing(in_tmp, capsys):
    (in_tmp / "afile").write_text("x")
    err = refused(in_tmp, capsys, ["sweep", *TINY, f"paths.root={in_tmp / 'afile' / 'sub'}"])
    assert err == (
        f"error: paths.root: cannot create the folder {in_tmp / 'afile' / 'sub' / 'plants'}: "
        f"{in_tmp / 'afile'} is a file; give a folder path\n"
    )


def test_train_beside_a_best_yaml_in_a_folder_that_cannot_hold_final_writes_nothing(in_tmp, capsys):
    best = in_tmp / "b" / "best.yaml"
    best.parent.mkdir()
    best.write_text("seed: 1\n")
    (in_tmp / "b" / "final").write_text("a file where final/ should be")
    err = refused(in_tmp, capsys, ["train", f"best={best}"])
    assert err.startswith(f"error: best: cannot create the folder {in_tmp / 'b' / 'final'}: ")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("inf", "column 'height' of plants.csv is a number column but has an infinite value (row 5: inf)"),
        ("-inf", "(row 5: -inf)"),
    ],
)
def test_training_table_with_an_infinity_is_refused_naming_column_and_row(in_tmp, capsys, cell, expected):
    plants_csv(in_tmp / "plants.csv", n=60)
    lines = (in_tmp / "plants.csv").read_text().splitlines(keepends=True)
    lines[5] = cell + lines[5][lines[5].index(",") :]
    (in_tmp / "plants.csv").write_text("".join(lines))
    capsys.readouterr()
    assert cli(CSV_SWEEP) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.path: ") and err.count("\n") == 1 and expected in err
    assert not (in_tmp / "experiments" / "plants" / "optuna.db").exists()


def test_training_table_with_a_ragged_row_is_refused(in_tmp, capsys):
    plants_csv(in_tmp / "plants.csv", n=60)
    lines = (in_tmp / "plants.csv").read_text().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + ",extra\n"
    (in_tmp / "plants.csv").write_text("".join(lines))
    capsys.readouterr()
    assert cli(CSV_SWEEP) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: data.path: plants.csv: line 4 has 5 values but the header has 4 columns; every row needs "
        "one value per column (empty for missing; quote values that contain ',')\n"
    )


def test_a_test_file_with_text_in_a_number_column_is_refused_not_imputed(in_tmp, capsys):
    plants_csv(in_tmp / "plants.csv", n=80)
    test = pd.read_csv(in_tmp / "plants.csv").head(10).astype({"height": object})
    test.loc[6, "height"] = "unknown"
    test.to_csv(in_tmp / "test.csv", index=False)
    capsys.readouterr()
    assert cli([*CSV_SWEEP, "data.test_path=test.csv"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: data.test_path: column 'height' of the test file is a number column but has text that is "
        "not a number (row 7: 'unknown'); allowed: numbers, or an empty cell for a missing value\n"
    )
    assert not (in_tmp / "experiments" / "plants" / "optuna.db").exists()
