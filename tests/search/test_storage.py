"""Optuna storage from a URL: workers that start together on a new SQLite database."""

from __future__ import annotations

import optuna
from conftest import open_storage_together


def test_workers_starting_together_on_a_new_database_all_open_it(tmp_path):
    """Without retries, 1-3 of 4 such workers failed here ("UNIQUE constraint failed:
    alembic_version.version_num", "table ... already exists")."""
    url = f"sqlite:///{tmp_path / 'new' / 'optuna.db'}"
    for _ in range(2):
        (tmp_path / "new" / "optuna.db").unlink(missing_ok=True)
        results = open_storage_together(url, 4)
        assert [code for code, _, _ in results] == [0] * 4, [err[-500:] for _, _, err in results]
        assert [out.strip() for _, out, _ in results] == ["opened"] * 4
        assert optuna.study.get_all_study_names(storage=url) == []  # a sound, empty database
