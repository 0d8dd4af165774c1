"""Optuna's storage object for a checked URL: SQLite, any RDB (with heartbeats) or a journal file."""

from __future__ import annotations

import time
from typing import Any

import optuna

from tuning.search.storage import CREATE_ATTEMPTS, check_journal, is_journal, local_path


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int = 1,
) -> Any:
    """An Optuna storage for ``url``.

    RDB storages (SQLite, PostgreSQL, MySQL) get heartbeats: a trial whose worker died is
    marked FAIL by the next worker and re-queued once with the same parameters
    (``RetryHeartbeatStaleTrialCallback``). Journal files have no heartbeat in Optuna.
    """
    path = local_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if is_journal(url) and path is not None:
        check_journal(path)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    retry = (
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
    )
    from sqlalchemy.exc import IntegrityError, OperationalError

    def create() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )

    for attempt in range(1, CREATE_ATTEMPTS):
        try:
            return create()
        except (IntegrityError, OperationalError):
            # Workers started together on a new database all create its tables; the losers of
            # that race fail once (e.g. "UNIQUE constraint failed: alembic_version"), then find
            # the tables made.
            time.sleep(0.5 * attempt)
    return create()
