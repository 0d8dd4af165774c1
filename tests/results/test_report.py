"""`tuning report` and the trials table: the stdlib SQLite reader against Optuna's own reader,
its fallback, and what a report imports. Real Optuna studies in real files; no training."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
from conftest import cli

from tuning.results import optuna_sqlite as study_file
from tuning.results.table import format_table, trials_table, write_csv
from tuning.search.engines.optuna_study import summarize as from_study
from tuning.study.summary import counts_line

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "n_layers": optuna.distributions.IntDistribution(1, 3),
    "units_0": optuna.distributions.IntDistribution(8, 128, log=True),
    "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh", "elu"]),
    "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
}


def make_study(folder: Path, name: str = "plants", direction: str = "minimize") -> optuna.Study:
    """A study in every state a sweep leaves: complete, pruned, failed (with its reason), running."""
    url = f"sqlite:///{folder / name / 'optuna.db'}"
    (folder / name).mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=url, direction=direction)
    study.set_user_attr("metric", "val_loss" if direction == "minimize" else "val_accuracy")
    for i, outcome in enumerate(["complete", "pruned", "complete", "fail", "complete", "running"]):
        trial = study.ask(SPACE)
        if i == 0:  # a second layer in some trials only: a column others leave empty
            trial.suggest_int("units_1", 8, 128, log=True)
        trial.set_user_attr("seed", 42 + i)
        if outcome in ("complete", "pruned"):
            trial.set_user_attr("best_epoch", 3 + i)
            trial.set_user_attr("epochs_trained", 5 + i)
            trial.set_user_attr("gap_loss", 0.01 * i)
        if outcome == "complete":
            study.tell(trial, 0.5 - 0.05 * i if i != 4 else 0.45)  # trial 4 ties trial 1's value
        elif outcome == "pruned":
            trial.report(0.45, step=2)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif outcome == "fail":
            trial.set_user_attr("fail_reason", "loss became NaN at epoch 2")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study


def test_sqlite_reader_reads_exactly_what_optuna_reads(tmp_path):
    make_study(tmp_path)
    fast = study_file.read_study(tmp_path / "plants" / "optuna.db", "plants")
    assert fast is not None
    url = f"sqlite:///{tmp_path / 'plants' / 'optuna.db'}"
    assert fast == from_study(optuna.load_study(study_name="plants", storage=url))
    states = [t.state for t in fast.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL", "COMPLETE", "RUNNING"]
    assert fast.trials[1].value == 0.45  # a pruned trial keeps its last reported value
    assert fast.trials[0].params["units_1"] in range(8, 129) and "units_1" in fast.trials[0].int_params
    assert fast.trials[0].params["activation"] in ("relu", "tanh", "elu")
    assert isinstance(fast.trials[0].params["batch_size"], int)
    assert fast.trials[5].seconds is None and fast.trials[0].seconds >= 0
    assert fast.metric == "val_loss" and fast.direction == "minimize"


def test_a_fresh_optuna_database_has_a_schema_the_reader_knows(tmp_path):
    """Fails when Optuna changes its SQLite schema: check study_file against the new one, then
    add the revision to KNOWN_SCHEMAS (until then reports fall back to Optuna's reader)."""
    make_study(tmp_path)
    with sqlite3.connect(tmp_path / "plants" / "optuna.db") as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in study_file.KNOWN_SCHEMAS


def test_table_sorts_best_first_with_missing_values_last_and_ties_in_trial_order(tmp_path):
    make_study(tmp_path)
    table = trials_table(study_file.read_study(tmp_path / "plants" / "optuna.db", "plants"))
    assert table.columns[:5] == ["trial", "state", "val_loss", "best_epoch", "epochs_trained"]
    assert table.columns[5:8] == ["gap_loss", "n_layers", "units_0"]
    assert table.columns[-2:] == ["seconds", "fail_reason"]
    # Complete trials by value (0.40, 0.45, 0.50), then the pruned one (its 0.45 is an epoch's,
    # not a finished model's: never above a complete trial), then failed and running.
    assert table.column("trial") == [2, 4, 0, 1, 3, 5]
    assert table.column("val_loss")[-2:] == [None, None]
    assert table.column("fail_reason")[4] == "loss became NaN at epoch 2"


def test_maximized_metric_sorts_highest_first(tmp_path):
    study = make_study(tmp_path, "acc", direction="maximize")
    table = trials_table(from_study(study))
    assert table.columns[2] == "val_accuracy"
    assert table.column("trial")[:4] == [0, 4, 2, 1]


def test_format_table_aligns_columns_and_marks_missing_values(tmp_path):
    table = trials_table(from_study(make_study(tmp_path)))
    lines = format_table(table, width=None).splitlines()
    assert len({len(line) for line in lines}) == 1  # every column right-aligned to one width
    assert "fail_reason" not in lines[0]
    assert lines[-1].split()[:4] == ["5", "RUNNING", "-", "-"]
    assert len(format_table(table, top=2, width=None).splitlines()) == 3
    learning_rate = lines[1].split()[lines[0].split().index("learning_rate")]
    assert len(learning_rate.replace(".", "").replace("e-0", "").lstrip("0")) <= 4  # 4 significant digits


def test_write_csv_leaves_missing_values_empty_and_no_temporary_file(tmp_path):
    table = trials_table(from_study(make_study(tmp_path)))
    path = write_csv(table, tmp_path / "out" / "trials.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == table.column("trial")
    assert rows[-1]["val_loss"] == "" and rows[-1]["state"] == "RUNNING"
    assert float(rows[0]["learning_rate"]) == table.column("learning_rate")[0]  # full precision
    assert [p.name for p in path.parent.iterdir()] == ["trials.csv"]


def test_counts_line_orders_states():
    assert (
        counts_line(["FAIL", "COMPLETE", "RUNNING", "COMPLETE"]) == "4 trials: 2 COMPLETE, 1 FAIL, 1 RUNNING"
    )


# --- the command ------------------------------------------------------------------------------

REPORT_IMPORTS = (
    "import sys\nfrom tuning.cli import main\nrc = main(sys.argv[1:])\n"
    "heavy = [m for m in ('optuna', 'sqlalchemy', 'pandas', 'tensorflow', 'mlflow') if m in sys.modules]\n"
    "print('IMPORTED', heavy)\nsys.exit(rc)\n"
)


def report(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REPORT_IMPORTS, "report", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_reads_the_sqlite_file_without_optuna_or_pandas(tmp_path):
    make_study(tmp_path / "experiments")
    done = report(tmp_path, "--csv", "trials.csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "study 'plants' in sqlite:///experiments/plants/optuna.db: minimize val_loss; "
        "6 trials: 3 COMPLETE, 1 PRUNED, 1 FAIL, 1 RUNNING"
    )
    assert lines[2].split()[:3] == ["2", "COMPLETE", "0.4"]
    assert lines[-1] == "IMPORTED []"
    assert (tmp_path / "trials.csv").read_text().startswith("trial,state,val_loss,")


def test_report_falls_back_to_optuna_for_a_schema_it_does_not_know(tmp_path, monkeypatch, capsys):
    make_study(tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    assert cli(["report"]) == 0
    expected = capsys.readouterr().out
    monkeypatch.setattr(study_file, "KNOWN_SCHEMAS", frozenset())
    assert study_file.read_study(tmp_path / "experiments" / "plants" / "optuna.db", "plants") is None
    assert cli(["report"]) == 0
    assert capsys.readouterr().out == expected


def test_report_on_a_database_from_a_newer_optuna_is_one_line(tmp_path, monkeypatch, capsys):
    make_study(tmp_path / "experiments")
    db = tmp_path / "experiments" / "plants" / "optuna.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    before = db.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert cli(["report"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("error: study: cannot read 'plants' in sqlite:///experiments/plants/optuna.db: ")
    assert "optuna" in err.lower() and db.read_bytes() == before


def test_report_reads_a_journal_storage_through_optuna(tmp_path, monkeypatch, capsys):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(study_name="j", storage=storage)
    study.set_user_attr("metric", "val_loss")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "j", "--storage", "study.journal"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "study 'j' in study.journal: minimize val_loss; 3 trials: 3 COMPLETE"
    assert out[1].split() == ["trial", "state", "val_loss", "x", "seconds"]


def test_report_on_a_missing_sqlite_file_fails_cleanly_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "x", "--storage", "sqlite:///nowhere/optuna.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --storage: cannot read sqlite:///nowhere/optuna.db: no such file nowhere/optuna.db"
    assert not (tmp_path / "nowhere").exists()


def test_report_lists_the_studies_of_a_shared_file(tmp_path, monkeypatch, capsys):
    make_study(tmp_path, "a")
    url = f"sqlite:///{tmp_path / 'a' / 'optuna.db'}"
    optuna.create_study(study_name="b", storage=url)
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "c", "--storage", url]) == 2
    assert capsys.readouterr().err.strip().endswith("; studies: a, b")
    assert cli(["report", "b", "--storage", url]) == 0
    assert "0 trials" in capsys.readouterr().out.splitlines()[0]
    assert study_file.study_names(tmp_path / "a" / "optuna.db") == ["a", "b"]


def make_wide_study(folder: Path) -> None:
    """What a default plants sweep stores: every gap, three layers' units, Keras' long loss names."""
    space = {
        **SPACE,
        "units_1": optuna.distributions.IntDistribution(8, 128, log=True),
        "units_2": optuna.distributions.IntDistribution(8, 128, log=True),
        "epochs": optuna.distributions.IntDistribution(20, 100, step=20),
        "optimizer": optuna.distributions.CategoricalDistribution(["adam", "rmsprop", "sgd"]),
        "loss": optuna.distributions.CategoricalDistribution(
            ["binary_crossentropy", "binary_focal_crossentropy"]
        ),
    }
    (folder / "plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=f"sqlite:///{folder / 'plants' / 'optuna.db'}")
    study.set_user_attr("metric", "val_log_loss")
    for i, (units, loss) in enumerate(
        [((124, 67, 13), "binary_focal_crossentropy"), ((124,), "binary_crossentropy")]
    ):
        params = {
            "n_layers": len(units),
            **{f"units_{k}": u for k, u in enumerate(units)},
            **{"activation": "tanh", "batch_size": 64, "dropout": 0.09799, "learning_rate": 0.0001367},
            **{"epochs": 40, "optimizer": "rmsprop", "loss": loss},
        }
        attrs = {"best_epoch": 40, "epochs_trained": 40}
        attrs |= dict.fromkeys(("gap_accuracy", "gap_auc", "gap_log_loss", "gap_loss"), -0.008333)
        distributions = {name: space[name] for name in params}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=distributions, value=0.5776 + i, user_attrs=attrs
            )
        )


def test_report_fits_120_columns_and_wide_shows_every_column(tmp_path, monkeypatch, capsys):
    make_wide_study(tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    assert cli(["report"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 120, lines
    header = lines[1].split()
    assert header[:4] == ["trial", "state", "val_log_loss", "gap_log_loss"]
    assert {"units", "act", "batch", "lr", "dropout", "epochs", "loss", "optimizer"} <= set(header)
    assert "n_layers" not in header and "units_0" not in header  # one units column: 124,67,13
    cells = [line.split() for line in lines[2:4]]
    units = [row[header.index("units")] for row in cells]
    assert sorted(units) == ["124", "124,67,13"]
    losses = {row[header.index("loss")] for row in cells}
    assert losses <= {"binary_foca…", "binary_cros…"} and len(losses) == 2
    assert lines[4] == (
        "not shown: best_epoch, epochs_trained, seconds, gap_accuracy, gap_auc, gap_loss "
        "(tuning report --wide: every column)"
    )
    assert cli(["report", "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    study = study_file.read_study(tmp_path / "experiments" / "plants" / "optuna.db", "plants")
    assert wide[1].split() == trials_table(study).columns and len(wide) == 4
    assert "binary_focal_crossentropy" in wide[2] + wide[3]


def test_a_report_flag_it_does_not_know_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "--wat"]) == 2
    assert capsys.readouterr().err == "error: unrecognized arguments: --wat; see tuning report --help\n"
