"""A study's storage from a URL: embedded SQLite by default, any RDB URL, a journal file, or
``grpc://HOST:PORT`` (Optuna's gRPC storage proxy in front of one RDB, for many workers)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from tuning.errors import ConfigError
from tuning.redaction import first_line, redact

JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
CREATE_ATTEMPTS = 4
CONNECT_TIMEOUT = 10  # seconds to reach a database server before giving up
# The pip package behind each SQLAlchemy driver (postgresql:// is psycopg 3 from SQLAlchemy 2.1).
DRIVER_PACKAGES = {
    "psycopg": "tuning[postgres]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "mysqldb": "mysqlclient",
    "pymysql": "pymysql",
    "pyodbc": "pyodbc",
}


def default_storage_url(study_dir: str | Path) -> str:
    """Embedded storage for a study: one SQLite file in its folder, no server."""
    return f"sqlite:///{Path(study_dir) / 'optuna.db'}"


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith(JOURNAL_SUFFIXES)


def is_grpc(url: str) -> bool:
    """A study behind Optuna's gRPC storage proxy (``tuning storage-proxy``)."""
    return url.startswith("grpc://")


def grpc_address(url: str) -> tuple[str, int]:
    """Host and port of a ``grpc://HOST:PORT`` URL; anything else is one ``ConfigError`` line."""
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or "/" in host or "@" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "study.storage",
            f"{redact(url)!r} is not a gRPC proxy address; allowed: grpc://HOST:PORT (e.g. grpc://proxy:13000, "
            "started by `tuning storage-proxy`)",
        )
    return host, int(port)


def check_grpc(url: str, *, reach_server: bool) -> None:
    """The address's form and, with ``reach_server``, that a proxy answers there (one gRPC
    channel made ready, nothing asked of the study)."""
    host, port = grpc_address(url)
    if not reach_server:
        return
    import grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
        except grpc.FutureTimeoutError:
            raise ConfigError(
                "study.storage",
                f"no gRPC storage proxy answers at {host}:{port} within {CONNECT_TIMEOUT} s; start one with "
                "`tuning storage-proxy --storage postgresql://... --port PORT`",
            ) from None


def local_path(url: str) -> Path | None:
    """The file behind a SQLite or journal URL (None for a server)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if is_journal(url):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    return None


def check_storage(url: str, *, reach_server: bool = True) -> None:
    """Fail in one line, before anything is trained or written, when ``url`` cannot work.

    Checks the URL's form, that its database driver is installed and, with ``reach_server``,
    that a database server answers (one connection, nothing created). Existing SQLite and
    journal files are read (``check_sqlite``, ``check_journal``); new ones are made on first use.

    Raises:
        ConfigError: under ``study.storage``, credentials redacted.
    """
    if is_grpc(url):
        check_grpc(url, reach_server=reach_server)
        return
    path = local_path(url)
    if is_journal(url) and path is not None:
        check_journal(path)
        return
    if url.startswith("sqlite:///") and path is not None and path.is_file():
        check_sqlite(path)
        return
    if local_path(url) is not None or url.startswith("sqlite"):
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    shown = redact(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ConfigError(
            "study.storage",
            f"{shown!r} is not a storage URL; allowed: sqlite:///FILE, postgresql://USER@HOST/DB, "
            "mysql+pymysql://..., a .journal file, or grpc://HOST:PORT",
        ) from None
    load_driver: Any = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
    try:
        load_driver()
    except ImportError:
        driver = dialect.driver
        package = DRIVER_PACKAGES.get(driver, driver)
        raise ConfigError(
            "study.storage",
            f"{parsed.get_backend_name()} needs the driver {driver}; install it: pip install '{package}'",
        ) from None
    if not reach_server:
        return
    connect_args = {"connect_timeout": CONNECT_TIMEOUT} if parsed.get_backend_name() == "postgresql" else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as err:
        raise ConfigError("study.storage", f"cannot connect to {shown}: {first_line(err)}") from None
    finally:
        engine.dispose()


def check_sqlite(path: Path) -> None:
    """Refuse an existing study file that SQLite cannot read (damaged, or another kind of file).

    Reads the schema only; opened read-write without creating, so SQLite can roll back a
    transaction a crashed worker left in its ``-journal`` file, as any later open would.

    Raises:
        ConfigError: under ``study.storage``, naming the file and what to do.
    """
    import sqlite3

    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=60)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as err:
        raise ConfigError(
            "study.storage",
            f"{path}: not a readable SQLite database ({err}); nothing was written to it; restore it from a "
            "backup, or move it away to start the study anew",
        ) from None


def check_journal(path: Path) -> None:
    """Refuse a damaged journal file before Optuna appends to it, leaving its bytes as they are.

    Optuna's journal is one JSON record per line, appended under a lock. A line that is not a
    JSON record (garbage, another file type) makes every read fail. A last line without its
    newline is a write cut short (crash, full disk): Optuna reads past it, but its next record
    would be appended onto that partial line and the journal would never read again. That
    partial record was never committed (no reader accepted it), so cutting it off loses
    nothing; we refuse and say how, rather than edit a user's study file unasked.

    Raises:
        ConfigError: under ``study.storage``, naming the file, the line and the way out.
    """
    if not path.is_file():
        return  # a new journal (or a path error the first write reports)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError("study.storage", f"cannot read {path}: {err.strerror or err}") from None
    if data and not data.endswith(b"\n"):
        time.sleep(0.2)  # another worker may be writing its last line right now: look again
        data = path.read_bytes()
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise ConfigError(
                "study.storage",
                f"{path}: line {number} is not an Optuna journal record (damaged file, or not a journal); "
                "nothing was written to it; restore it from a backup or give another study.storage",
            )
    if lines[-1]:  # the last line has no newline: a write cut short
        keep = len(data) - len(lines[-1])
        raise ConfigError(
            "study.storage",
            f"{path}: its last line (line {len(lines)}) was cut off mid-write, e.g. by a crash; nothing was "
            f"written to it; that record was never committed: remove it with `truncate -s {keep} {shlex.quote(str(path))}` "
            f"(keeps the {len(lines) - 1} complete records), then run again",
        )
