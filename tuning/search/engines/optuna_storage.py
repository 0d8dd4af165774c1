"""Optuna's storage object for a checked URL: SQLite, any RDB (with heartbeats), a journal file
or Optuna's gRPC storage proxy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

from tuning.config.storage import (
    CREATE_ATTEMPTS,
    check_journal,
    grpc_address,
    is_grpc,
    is_journal,
    local_path,
)
from tuning.files import file_lock


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
    (``RetryHeartbeatStaleTrialCallback``). Journal files have no heartbeat in Optuna, nor has
    ``grpc://HOST:PORT`` (Optuna's ``GrpcStorageProxy`` implements no ``BaseHeartbeat``): a
    worker that dies there is found by its process (same host) or after ``grace_period``.
    """
    if is_grpc(url):  # the proxy holds the database connections; no heartbeat through it
        host, port = grpc_address(url)
        return optuna.storages.GrpcStorageProxy(host=host, port=port)
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
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    def create() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )

    def lost_the_race(err: BaseException) -> bool:
        """Workers started together on a new database all create its tables; the losers of that
        race fail once (SQLite: "UNIQUE constraint failed: alembic_version"; PostgreSQL: a
        duplicate table or object, SQLSTATE 42P07 / 42710), then find them made."""
        if isinstance(err, (IntegrityError, OperationalError)):
            return True
        return isinstance(err, ProgrammingError) and getattr(err.orig, "sqlstate", None) in ("42P07", "42710")

    return Retrying(
        stop=stop_after_attempt(CREATE_ATTEMPTS),
        wait=wait_incrementing(start=0.5, increment=0.5),
        retry=retry_if_exception(lost_the_race),
        reraise=True,
    )(create)


def serve_proxy(url: str, *, host: str, port: int, threads: int) -> None:
    """Serve the database at ``url`` to ``grpc://host:port`` workers until stopped (Optuna's gRPC
    storage proxy, ``tuning storage-proxy``)."""
    from concurrent.futures import ThreadPoolExecutor

    # get_storage: the RDB storage behind Optuna's cache, as run_grpc_proxy_server's docs ask.
    storage = optuna.storages.get_storage(url)
    optuna.storages.run_grpc_proxy_server(
        storage, host=host, port=port, thread_pool=ThreadPoolExecutor(threads)
    )


@contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Hold a lock on study ``name`` for a few storage writes that must happen once among
    workers that start together (re-queueing the trials a stopped worker left).

    One context manager, the lock chosen by storage kind: a local file (SQLite, journal) is
    locked through ``<file>.study.lock`` (``tuning.files.file_lock``; not ``<file>.lock``, the
    lock Optuna's journal storage takes for each of its own writes: holding that one here left
    the writes inside waiting out Optuna's 30 s grace, which then broke the lock and let a
    second worker in); PostgreSQL with an advisory
    lock and MySQL with ``GET_LOCK`` (no lock file can reach every machine of a server's
    workers), both released with the connection if this worker dies. Other storages: no lock.
    """
    path = local_path(url)
    if path is not None:
        with file_lock(path.with_name(path.name + ".study.lock")):
            yield
        return
    key = int.from_bytes(hashlib.sha256(f"tuning:{name}".encode()).digest()[:8], "big", signed=True)
    if url.startswith("postgresql"):
        acquire, release = "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"
    elif url.startswith("mysql"):
        acquire, release = "SELECT GET_LOCK(:k, 600)", "SELECT RELEASE_LOCK(:k)"
        key = str(key)  # type: ignore[assignment]
    else:
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(acquire), {"k": key})
            try:
                yield
            finally:
                connection.execute(text(release), {"k": key})
    finally:
        engine.dispose()
