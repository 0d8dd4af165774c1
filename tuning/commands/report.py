"""`tuning report [STUDY]`: a study's trials sorted by the objective, from its Optuna storage or
its KerasTuner folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tuning.config.storage import check_storage, default_storage_url, local_path
from tuning.errors import ConfigError
from tuning.redaction import first_line, redact
from tuning.results import optuna_sqlite as study_file
from tuning.results.table import WIDTH, failure_lines, format_table, trials_table, write_csv
from tuning.study import keras_tuner_files
from tuning.study.selection import pick_reason, selection_of
from tuning.study.summary import StudySummary, counts_line


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line and exit code 2, as every other command's bad input."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see tuning report --help", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tuning report", description=__doc__)
    p.add_argument("study", nargs="?", help="study name (default: the only study under --root)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<root>/<study>/optuna.db)")
    p.add_argument("--root", default="experiments", help="folder holding the studies (default: experiments)")
    p.add_argument("--csv", metavar="PATH", help="also write the whole table as CSV")
    p.add_argument("--top", type=int, default=None, help="show only the best N trials")
    p.add_argument(
        "--wide", action="store_true", help=f"every column under its full name (default: fit {WIDTH} columns)"
    )
    return p


def local_studies(root: Path) -> list[str]:
    """Studies with embedded storage under ``root``: folders holding optuna.db or a KerasTuner study."""
    optuna_studies = {p.parent.name for p in root.glob("*/optuna.db")}
    return sorted(optuna_studies | set(keras_tuner_files.local_studies(root)))


def _sqlite_file(url: str) -> Path | None:
    path = local_path(url)
    return path if path is not None and url.startswith("sqlite:") else None


def study_names(url: str) -> list[str]:
    """The studies in a storage: straight from a SQLite file when possible, else through Optuna."""
    path = local_path(url)
    if path is not None and not path.is_file():  # Optuna would create an empty one there
        raise FileNotFoundError(f"no such file {path}")
    sqlite_file = _sqlite_file(url)
    names = study_file.study_names(sqlite_file) if sqlite_file is not None else None
    if names is not None:
        return names
    from tuning.search.engines.optuna_study import study_names as optuna_study_names

    return optuna_study_names(url)


def load_summary(url: str, name: str) -> StudySummary:
    """Study ``name`` as plain data (the fast SQLite reader first, Optuna's reader otherwise)."""
    path = _sqlite_file(url)
    summary = study_file.read_study(path, name) if path is not None else None
    if summary is not None:
        return summary
    from tuning.search.engines.optuna_study import load_summary as optuna_summary

    return optuna_summary(url, name)


def main(args: Sequence[str]) -> int:
    opts = _parser().parse_args(list(args))
    root = Path(opts.root)
    name = opts.study
    if opts.storage:
        url = opts.storage
        try:
            check_storage(url, reach_server=False)
            names = study_names(url)
        except ConfigError as err:
            print(f"error: --storage: {err.message}", file=sys.stderr)
            return 2
        except Exception as err:
            print(f"error: --storage: cannot read {redact(url)}: {first_line(err)}", file=sys.stderr)
            return 2
    else:
        names = local_studies(root)
        if name is None and len(names) == 1:
            name = names[0]
        url = default_storage_url(root / name) if name in names else ""
        project = keras_tuner_files.project_folder(root / str(name))
        if name in names and not (root / str(name) / "optuna.db").is_file():
            url = str(project)  # a KerasTuner study: its folder is its storage
    if name is None or name not in names:
        where = redact(url) if opts.storage else f"{root}/"
        found = ", ".join(names) if names else "none"
        what = f"no study '{name}'" if name else "which study?"
        print(f"error: study: {what} in {where}; studies: {found}", file=sys.stderr)
        return 2
    try:
        kt_study = None if opts.storage else keras_tuner_files.read_project(Path(url), name)
        study = kt_study if kt_study is not None else load_summary(url, name)
    except ConfigError as err:  # a damaged file of a KerasTuner study: it names the file
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # e.g. a database written by a newer Optuna
        print(
            f"error: study: cannot read '{name}' in {redact(url)}: {first_line(err)}",
            file=sys.stderr,
        )
        return 2
    table = trials_table(study)
    states = [t.state for t in study.trials]
    print(f"study '{name}' in {redact(url)}: {study.direction} {study.metric}; {counts_line(states)}")
    print(format_table(table, opts.top, width=None if opts.wide else WIDTH))
    best = study.best()
    if best is not None and selection_of(study).mode != "best":  # why this trial, not the top score
        print(f"picked trial {best.number}: {pick_reason(study)}")
    failures = failure_lines(study)
    if failures:
        print("failed trials:\n" + "\n".join(failures))
    if opts.csv:
        write_csv(table, opts.csv)
        print(f"table written to {opts.csv}")
    return 0
