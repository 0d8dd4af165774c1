"""`tuning storage-proxy`: Optuna's gRPC storage proxy in front of one study database.

Hundreds of workers each holding database connections exhaust PostgreSQL's
``max_connections`` and queue on its locks; with the proxy only this process talks to the
database (through Optuna's cached storage) and the workers use ``study.storage=grpc://HOST:PORT``.
No TensorFlow.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from tuning.commands.support import fail
from tuning.config.storage import check_storage, is_grpc, is_journal
from tuning.errors import ConfigError
from tuning.redaction import redact

DEFAULT_PORT = 13000  # Optuna's own default


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line and exit code 2, as every other command's bad input."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see tuning storage-proxy --help", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tuning storage-proxy",
        description=__doc__,
        epilog="example: tuning storage-proxy --storage postgresql://tuner@db/optuna --host 0.0.0.0 --port 13000\n"
        "then, on every worker: tuning sweep study.storage=grpc://PROXY_HOST:13000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storage", required=True, help="the database URL (PostgreSQL, MySQL or SQLite)")
    p.add_argument("--host", default="localhost", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--threads", type=int, default=32, help="requests served at once (default 32; Optuna's own is 10)"
    )
    return p


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(143)


def main(args: Sequence[str]) -> int:
    """Check the database (one line, exit 2 when it cannot work), then serve until Ctrl-C / SIGTERM."""
    options = _parser().parse_args(list(args))
    url = str(options.storage)
    try:
        if is_grpc(url) or is_journal(url):
            raise ConfigError(
                "--storage",
                f"{redact(url)!r}: the proxy serves a database; allowed: postgresql://..., mysql://..., sqlite:///FILE",
            )
        if not 0 < options.port < 65536 or options.threads < 1:
            raise ConfigError(
                "--port", f"{options.port} (threads {options.threads}); allowed: 1-65535, threads >= 1"
            )
        check_storage(url, reach_server=True)
    except ConfigError as err:
        fail(err)
    from tuning.search.engines.optuna_storage import serve_proxy

    print(
        f"storage proxy for {redact(url)} on grpc://{options.host}:{options.port} ({options.threads} threads)"
    )
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        serve_proxy(url, host=options.host, port=options.port, threads=options.threads)
    except KeyboardInterrupt:
        print("\ninterrupted: storage proxy stopped", file=sys.stderr)
        return 130
    return 0
