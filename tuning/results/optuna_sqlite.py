"""Read a study straight from Optuna's SQLite file, with the standard library only.

Written by hand because `tuning report` must answer in under a second: Optuna's own reader
(``optuna.load_study``) imports SQLAlchemy and alembic and checks the schema, 1.5-2 s before
the first row. This reads the same tables read-only, for the schema versions it knows
(``KNOWN_SCHEMAS``, checked against the installed Optuna by the tests); any other file, or
anything unexpected in it, gives None and the caller reads the study through Optuna instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tuning.config.selection import SELECTION_ATTR, Selection
from tuning.study.selection import apply as apply_selection
from tuning.study.summary import StudySummary, TrialSummary, flat_attrs

# alembic revisions of Optuna's RDB schema whose tables this module reads (Optuna 3.2 - 5.x).
KNOWN_SCHEMAS = frozenset({"v3.2.0.a"})
_INT_DISTRIBUTIONS = ("IntDistribution", "IntUniformDistribution", "IntLogUniformDistribution")
_INFINITE = {"INF_POS": float("inf"), "INF_NEG": float("-inf"), "NAN": float("nan")}


class UnknownSchema(Exception):
    """The file is not an Optuna SQLite study this module can read."""


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """Read-only: a report never creates, migrates or locks the file for writing."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if {r[0] for r in rows} - KNOWN_SCHEMAS or not rows:
            raise UnknownSchema(f"schema {[r[0] for r in rows]}")
        yield conn


def study_names(path: str | Path) -> list[str] | None:
    """Names of the studies in the file, or None when it cannot be read this way."""
    try:
        with _connect(Path(path)) as conn:
            return sorted(r[0] for r in conn.execute("SELECT study_name FROM studies"))
    except (sqlite3.Error, UnknownSchema):
        return None


def read_study(path: str | Path, name: str) -> StudySummary | None:
    """Study ``name`` with all its trials, or None when it cannot be read this way."""
    try:
        with _connect(Path(path)) as conn:
            return _read(conn, name)
    except (sqlite3.Error, UnknownSchema, ValueError, KeyError, TypeError, IndexError):
        return None


def _read(conn: sqlite3.Connection, name: str) -> StudySummary | None:
    found = conn.execute("SELECT study_id FROM studies WHERE study_name = ?", (name,)).fetchone()
    if found is None:
        return None
    study_id = found[0]
    directions = conn.execute(
        "SELECT direction FROM study_directions WHERE study_id = ? ORDER BY objective", (study_id,)
    ).fetchall()
    attrs = {
        k: json.loads(v)
        for k, v in conn.execute(
            "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", (study_id,)
        )
    }
    # selection=pareto: objective 0 is the metric, objective 1 the gap (also a user attribute).
    pareto = len(directions) == 2 and selection_of_attrs(attrs).mode == "pareto"
    if len(directions) != 1 and not pareto:  # other multi-objective studies: Optuna's reader
        raise UnknownSchema("not a single-objective study")
    values = {
        trial_id: _INFINITE.get(kind, value)
        for trial_id, value, kind in _per_trial(
            conn, "SELECT trial_id, value, value_type FROM trial_values WHERE objective = 0", study_id
        )
    }
    params, ints = _params(conn, study_id)
    user_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in _per_trial(
        conn, "SELECT trial_id, key, value_json FROM trial_user_attributes", study_id
    ):
        user_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    steps = _intermediate_values(conn, study_id)
    trials = [
        TrialSummary(
            number=number,
            state=state,
            value=values.get(trial_id),
            params=params.get(trial_id, {}),
            int_params=frozenset(ints.get(trial_id, ())),
            user_attrs=flat_attrs(user_attrs.get(trial_id, {})),
            seconds=_seconds(start, complete),
            start_time=datetime.datetime.fromisoformat(start).timestamp() if start else None,
            intermediate_values=dict(sorted(steps.get(trial_id, {}).items())),
        )
        for trial_id, number, state, start, complete in conn.execute(
            "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
            "WHERE study_id = ? ORDER BY number",
            (study_id,),
        )
    ]
    summary = StudySummary(name=name, direction=directions[0][0].lower(), user_attrs=attrs, trials=trials)
    best = summary.best()  # Optuna's rule for one objective: the best complete value, first on ties
    summary = dataclasses.replace(summary, best_number=best.number if best is not None else None)
    return apply_selection(summary)  # constrained: the best feasible trial, as the sweep picked


def _params(conn: sqlite3.Connection, study_id: int) -> tuple[dict[int, dict[str, Any]], dict[int, set[str]]]:
    """Each trial's params as the search saw them, and the names of its integer params."""
    params: dict[int, dict[str, Any]] = {}
    ints: dict[int, set[str]] = {}
    for trial_id, param, internal, dist_json in _per_trial(
        conn, "SELECT trial_id, param_name, param_value, distribution_json FROM trial_params", study_id
    ):
        value, is_int = _external(internal, json.loads(dist_json))
        params.setdefault(trial_id, {})[param] = value
        if is_int:
            ints.setdefault(trial_id, set()).add(param)
    return params, ints


def _intermediate_values(conn: sqlite3.Connection, study_id: int) -> dict[int, dict[int, float]]:
    """Each trial's reported value per step (epoch)."""
    steps: dict[int, dict[int, float]] = {}
    for trial_id, step, value, kind in _per_trial(
        conn,
        "SELECT trial_id, step, intermediate_value, intermediate_value_type FROM trial_intermediate_values",
        study_id,
    ):
        steps.setdefault(trial_id, {})[int(step)] = _INFINITE.get(kind, value)
    return steps


def selection_of_attrs(attrs: dict[str, Any]) -> Selection:
    return Selection.from_attr(attrs.get(SELECTION_ATTR))


def _per_trial(conn: sqlite3.Connection, select: str, study_id: int) -> sqlite3.Cursor:
    """Rows of a per-trial table restricted to one study's trials."""
    where = " AND" if " WHERE " in select else " WHERE"
    return conn.execute(
        f"{select}{where} trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?)", (study_id,)
    )


def _external(internal: float, distribution: dict[str, Any]) -> tuple[Any, bool]:
    """A parameter as the user sees it (Optuna stores a choice's index, ints as floats)."""
    kind, attributes = distribution["name"], distribution["attributes"]
    if kind == "CategoricalDistribution":
        return attributes["choices"][int(internal)], False
    if kind in _INT_DISTRIBUTIONS:
        return int(internal), True
    return float(internal), False


def _seconds(start: str | None, complete: str | None) -> float | None:
    if not start or not complete:
        return None
    return (
        datetime.datetime.fromisoformat(complete) - datetime.datetime.fromisoformat(start)
    ).total_seconds()
