"""Damaged study files: a journal with garbage or a cut last line, a SQLite file that is not one.

Each is refused before anything runs: one line naming the file and what to do, exit 2, the
file's bytes unchanged and nothing else written.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli

from tuning.search.engines.optuna_storage import open_storage


def journal_with_trials(path: Path, n_trials: int = 3) -> bytes:
    """A real Optuna journal of one study ('plants') with ``n_trials`` finished trials."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="plants", storage=open_storage(str(path)))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    return path.read_bytes()


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(folder: Path, capsys, override: str) -> str:
    """Run a sweep that must be refused; returns its one error line, checks nothing changed."""
    before = files_under(folder)
    assert cli(["sweep", *TINY, override]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert files_under(folder) == before  # the damaged file byte for byte, and nothing new
    return err


def test_a_journal_of_garbage_is_refused_and_left_as_it_is(in_tmp, capsys):
    path = in_tmp / "study.journal"
    path.write_bytes(b"\x00\x01 not json at all\n{}\n")
    err = refused(in_tmp, capsys, f"study.storage={path}")
    assert err.startswith(f"error: study.storage: {path}: line 1 is not an Optuna journal record")
    assert "restore it from a backup or give another study.storage" in err


def test_a_damaged_line_inside_a_journal_is_named(in_tmp, capsys):
    path = in_tmp / "study.journal"
    lines = journal_with_trials(path).splitlines(keepends=True)
    lines[2] = b'{"op_code": 5, "trial_id": \n'  # a record broken in the middle of the file
    path.write_bytes(b"".join(lines))
    err = refused(in_tmp, capsys, f"study.storage={path}")
    assert f"{path}: line 3 is not an Optuna journal record" in err


def test_a_journal_cut_mid_write_is_refused_with_the_exact_repair_which_keeps_every_trial(in_tmp, capsys):
    path = in_tmp / "study.journal"
    whole = journal_with_trials(path, n_trials=3)
    records = whole.count(b"\n")
    path.write_bytes(whole + b'{"op_code": 4, "worker_id": "crashed-wor')  # a record cut short
    err = refused(in_tmp, capsys, f"study.storage={path}")
    assert f"{path}: its last line (line {records + 1}) was cut off mid-write" in err
    assert f"(keeps the {records} complete records)" in err

    # The command the message gives repairs it: the complete records, every trial, are all kept.
    command = re.search(r"`(truncate -s \d+ .+?)`", err)[1]
    subprocess.run(command, shell=True, check=True)
    assert path.read_bytes() == whole
    study = optuna.load_study(study_name="plants", storage=open_storage(str(path)))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3


def test_an_intact_journal_opens_and_a_new_one_is_created(tmp_path):
    path = tmp_path / "study.journal"
    whole = journal_with_trials(path, n_trials=2)
    assert len(optuna.load_study(study_name="plants", storage=open_storage(str(path))).trials) == 2
    assert path.read_bytes() == whole  # reading appends nothing
    assert optuna.study.get_all_study_names(open_storage(str(tmp_path / "new" / "s.journal"))) == []


@pytest.mark.parametrize(
    "content",
    [b"SQLite format 3\x00" + b"garbage" * 200, b"plain text, not a database\n" * 50],
    ids=["damaged-header", "not-sqlite"],
)
def test_a_damaged_sqlite_study_file_is_one_line_and_left_as_it_is(in_tmp, capsys, content):
    path = in_tmp / "experiments" / "plants" / "optuna.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    err = refused(in_tmp, capsys, "study.name=plants")
    assert err.startswith(
        "error: study.storage: experiments/plants/optuna.db: not a readable SQLite database"
    )
    assert "restore it from a backup, or move it away to start the study anew" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["oracle.json", "trial_0000/trial.json", "study.json"])
def test_a_damaged_keras_tuner_file_is_one_line_and_left_as_it_is(in_tmp, capsys, name):
    args = [*TINY, "engine=keras_tuner", "engine.algorithm=random"]
    assert cli(["sweep", *args, "study.n_trials=1"]) == 0
    project = in_tmp / "experiments" / "plants-keras_tuner"
    path = project / "keras_tuner" / name
    path.write_bytes(path.read_bytes()[:-7])  # a write cut short
    before = files_under(project)
    capsys.readouterr()
    assert cli(["sweep", *args, "study.n_trials=2"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: study.name: {Path('experiments/plants-keras_tuner/keras_tuner') / name}: ")
    assert "not a readable KerasTuner file" in err and "restore it from a backup" in err
    assert files_under(project) == before, "nothing written, the damaged file byte for byte"
