"""The trials table: one row per trial, best first, for the sweep's summary, `tuning report` and
the MLflow ``trials.csv``.

Plain Python on purpose: `tuning report` must answer in under a second and importing pandas alone
takes 0.4-1.3 s on a 2-core machine; the table is small (one row per trial) and only sorted,
printed and written as CSV.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning.files import atomic_text
from tuning.study.selection import trial_marks
from tuning.study.summary import WARM_ATTR, WARM_FROM_ATTR, StudySummary, TrialSummary

MISSING = "-"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]  # None where a trial has no value

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def trials_table(study: StudySummary) -> Table:
    """trial, state, the objective (named after the metric), best_epoch, epochs_trained, the gaps,
    the parameters in search-space order, seconds, fail_reason; complete trials first (best
    first), then pruned ones by value, then the rest; missing values last."""
    metric, trials = study.metric, study.trials
    attrs = {key for t in trials for key in t.user_attrs}
    counters = [name for name in ("best_epoch", "epochs_trained") if name in attrs]
    gap_names = sorted(key for key in attrs if key.startswith("gap_"))
    params = _ordered_params({name for t in trials for name in t.params})
    # What the selection says of each trial (selection=constrained/pareto) and the folds' spread.
    marks = trial_marks(study)
    mark_names = [m for m in ("feasible", "pareto_rank") if any(m in v for v in marks.values())]
    spread = ["cv_std"] if "cv_std" in attrs else []
    warm = ["warm_start"] if WARM_ATTR in attrs else []  # added / queued by warm_start.from
    columns = [
        "trial",
        "state",
        metric,
        *spread,
        *warm,
        *counters,
        *gap_names,
        *mark_names,
        *params,
        "seconds",
    ]
    if "fail_reason" in attrs:
        columns.append("fail_reason")
    rows: list[list[Any]] = []
    for t in trials:
        row = [t.number, t.state, _number(t.value)]
        row += [_number(t.user_attrs.get(name)) for name in spread]
        row += [_warm(t) for _ in warm]
        row += [_int(t.user_attrs.get(name)) for name in counters]
        row += [_number(t.user_attrs.get(name)) for name in gap_names]
        row += [_mark(marks.get(t.number, {}).get(name)) for name in mark_names]
        row += [t.params.get(name) for name in params]
        row.append(None if t.seconds is None else round(t.seconds, 1))
        if "fail_reason" in attrs:
            row.append(t.user_attrs.get("fail_reason"))
        rows.append(row)
    sign = 1.0 if study.direction == "minimize" else -1.0
    # Complete trials first, by value: a pruned trial's value is its last reported epoch, not a
    # finished model's, so it never ranks above a complete one (Optuna's best is complete too).
    rank = {"COMPLETE": 0, "PRUNED": 1}
    rows.sort(
        key=lambda r: (rank.get(str(r[1]), 2), r[2] is None, sign * float(r[2]) if r[2] is not None else 0.0)
    )  # stable
    best = study.best()
    if best is not None and study.best_number is not None:  # the selection's pick heads the table
        rows.sort(key=lambda r: r[0] != best.number)
    return Table(columns, rows)


def _warm(trial: TrialSummary) -> str | None:
    """``added`` (copied from an earlier study on the same data), ``queued`` (an earlier
    configuration run first), or None (the search's own)."""
    if WARM_ATTR not in trial.user_attrs:
        return None
    return "added" if WARM_FROM_ATTR in trial.user_attrs else "queued"


def _mark(value: Any) -> Any:
    """``yes``/``no`` for the feasible flag; a Pareto rank as it is (0 = on the front)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _ordered_params(names: set[str]) -> list[str]:
    """Search-space order: layers first, units per layer in order, the rest alphabetically."""
    units = sorted((n for n in names if n.startswith("units_")), key=lambda n: int(n.split("_")[1]))
    rest = sorted(n for n in names if not n.startswith("units_") and n != "n_layers")
    return (["n_layers"] if "n_layers" in names else []) + units + rest


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


WIDTH = 120  # what `tuning report` and the sweep's summary fit by default; --wide: no limit
CELL = 12  # longer text values are cut to this many characters (``binary_foca…``)
# Headers shortened in the fitted table (the CSV and --wide keep the full names).
SHORT = {"learning_rate": "lr", "batch_size": "batch", "activation": "act", "epochs_trained": "trained"}


def format_table(
    table: Table, top: int | None = None, drop: Sequence[str] = ("fail_reason",), width: int | None = WIDTH
) -> str:
    """Text table of the first ``top`` rows, columns right-aligned, floats to 4 significant digits.

    With ``width`` the lines fit it: units per layer in one ``units`` column (``64,32``), a few
    headers shortened (``lr``, ``batch``), long text cut, and the columns that still do not fit
    left out by priority (trial, state, metric, its spread and gap, the selection's marks, the
    parameters, then the counters, the other gaps, seconds), named on a last line.
    ``width=None``: every column under its own name."""
    rows = table.rows[:top] if top else table.rows
    columns = [
        (name, [_text(row[i]) for row in rows]) for i, name in enumerate(table.columns) if name not in drop
    ]
    hidden: list[str] = []
    if width is not None:
        columns, hidden = _fit(_narrow(columns), width, metric=table.columns[2])
    headers = {} if width is None else SHORT
    lines = [[headers.get(name, name) for name, _ in columns]] + [
        list(line) for line in zip(*(c for _, c in columns), strict=True)
    ]
    widths = [max(len(line[k]) for line in lines) for k in range(len(columns))]
    text = "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
    if hidden and width is not None:  # the names cut to fit, the hint kept
        hint = " (tuning report --wide: every column)"
        names = textwrap.shorten(", ".join(hidden), width - len("not shown: ") - len(hint), placeholder=" …")
        text += f"\nnot shown: {names}{hint}"
    return text


Column = tuple[str, list[str]]  # header, cells


def _narrow(columns: list[Column]) -> list[Column]:
    """One ``units`` column for ``units_0..k`` (n_layers is its length), long text cut."""
    units = [cells for name, cells in columns if name.startswith("units_")]
    out: list[Column] = []
    for name, cells in columns:
        if name == "n_layers" and units:
            continue
        if name.startswith("units_"):
            if name == "units_0":
                joined = [",".join(c for c in row if c != MISSING) for row in zip(*units, strict=True)]
                out.append(("units", [c or MISSING for c in joined]))
            continue
        out.append((name, [c if len(c) <= CELL else c[: CELL - 1] + "…" for c in cells]))
    return out


def _rank(name: str, metric: str) -> int:
    """Which columns stay first when not all fit: 0 always, then 1, 2, ..."""
    if name in ("trial", "state", metric):
        return 0
    if name in ("cv_std", "gap_" + metric.removeprefix("val_"), "feasible", "pareto_rank", "warm_start"):
        return 1
    later = ("best_epoch", "epochs_trained", "seconds")
    if name in later:
        return 3 + later.index(name)
    return 6 if name.startswith("gap_") else 2  # the other gaps last; anything else is a parameter


def _fit(columns: list[Column], width: int, metric: str) -> tuple[list[Column], list[str]]:
    """The columns that fit ``width`` (two spaces between), in their own order: the first ones
    by rank, up to the first that does not fit; and the names of the ones left out, by rank."""
    sizes = [max([len(SHORT.get(name, name)), *map(len, cells)]) for name, cells in columns]
    order = sorted(range(len(columns)), key=lambda i: (_rank(columns[i][0], metric), i))
    kept: set[int] = set()
    used = -2
    for i in order:
        if used + 2 + sizes[i] > width and _rank(columns[i][0], metric) > 0:
            break
        kept.add(i)
        used += 2 + sizes[i]
    hidden = [columns[i][0] for i in order if i not in kept]
    return [c for i, c in enumerate(columns) if i in kept], hidden


def write_csv(table: Table, path: str | Path) -> Path:
    """The whole table as CSV (missing values empty), written atomically."""
    with atomic_text(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.columns)
        writer.writerows([["" if v is None else v for v in row] for row in table.rows])
    return Path(path)


def failure_lines(study: StudySummary) -> list[str]:
    """One line per failed trial with its reason (``trial 3: loss became NaN at epoch 2``)."""
    lines = []
    for t in study.trials:
        if t.state == "FAIL":
            reason = t.user_attrs.get("fail_reason") or (
                "interrupted" if t.user_attrs.get("interrupted") else "no reason stored"
            )
            retry = t.user_attrs.get("retry_of")
            lines.append(
                f"trial {t.number}: {reason}" + (f" (retry of trial {retry})" if retry is not None else "")
            )
    return lines
