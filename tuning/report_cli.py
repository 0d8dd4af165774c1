"""`tuning report [STUDY]`: a study's trials sorted by the objective, from its Optuna storage."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from tuning.storage import default_storage_url, redact


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tuning report", description=__doc__)
    p.add_argument("study", nargs="?", help="study name (default: the only study under --root)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<root>/<study>/optuna.db)")
    p.add_argument("--root", default="experiments", help="folder holding the studies (default: experiments)")
    p.add_argument("--csv", metavar="PATH", help="also write the whole table as CSV")
    p.add_argument("--top", type=int, default=None, help="show only the best N trials")
    return p


def local_studies(root: Path) -> list[str]:
    """Studies with embedded storage under ``root`` (folder names holding optuna.db)."""
    return sorted(p.parent.name for p in root.glob("*/optuna.db"))


def main(args: Sequence[str]) -> int:
    import optuna

    from tuning.report import counts_line, format_table, trials_table

    opts = _parser().parse_args(list(args))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    root = Path(opts.root)
    name = opts.study
    if opts.storage:
        url = opts.storage
        try:
            names = optuna.study.get_all_study_names(storage=url)
        except Exception as err:
            print(f"error: --storage: cannot read {redact(url)}: {str(err).splitlines()[0]}", file=sys.stderr)
            return 2
    else:
        names = local_studies(root)
        if name is None and len(names) == 1:
            name = names[0]
        url = default_storage_url(root / name) if name in names else ""
    if name is None or name not in names:
        where = redact(url) if opts.storage else f"{root}/"
        found = ", ".join(names) if names else "none"
        what = f"no study '{name}'" if name else "which study?"
        print(f"error: study: {what} in {where}; studies: {found}", file=sys.stderr)
        return 2
    study = optuna.load_study(study_name=name, storage=url)
    table = trials_table(study)
    direction = study.direction.name.lower()
    print(
        f"study '{name}' in {redact(url)}: {direction} {study.user_attrs.get('metric', 'value')}; {counts_line(study)}"
    )
    print(format_table(table, opts.top))
    if opts.csv:
        Path(opts.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(opts.csv, index=False)
        print(f"table written to {opts.csv}")
    return 0
