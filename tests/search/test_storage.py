"""Optuna storage from a URL: workers that start together on a new SQLite database."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna

# Each process sleeps until the same instant, then opens (and so creates) the same database.
OPEN_AT = (
    "import sys, time\nimport optuna\nfrom tuning.search.engines.optuna_storage import open_storage\n"
    "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
    "open_storage(sys.argv[1], heartbeat_interval=60)\nprint('opened')\n"
)


def test_workers_starting_together_on_a_new_database_all_open_it(tmp_path):
    """Without retries, 1-3 of 4 such workers failed here ("UNIQUE constraint failed:
    alembic_version.version_num", "table ... already exists")."""
    url = f"sqlite:///{tmp_path / 'new' / 'optuna.db'}"
    for _ in range(2):
        (tmp_path / "new" / "optuna.db").unlink(missing_ok=True)
        start = time.time() + 6  # after every interpreter has imported Optuna
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT, url, str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0] * 4, [err[-500:] for _, err in results]
        assert [out.strip() for out, _ in results] == ["opened"] * 4
        assert optuna.study.get_all_study_names(storage=url) == []  # a sound, empty database
