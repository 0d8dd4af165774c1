"""The one place that hides credentials inside URLs and error text before they are shown or stored."""

from __future__ import annotations

import re

# `\\?:` also matches Hydra's escaped form of an override (`uri=http\://user\:pw@host`).
_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*\\?://)(?P<user>[^/@:\\]*)((?P<sep>\\?:)(?P<pw>[^/@]*))?@"
)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|api_key|access_key)=)[^&]*")


def redact(url: str | None) -> str | None:
    """``url`` with any password or token replaced by ``***`` (user names are kept)."""
    if url is None:
        return None
    url = _CREDENTIALS.sub(
        lambda m: f"{m['scheme']}{m['user']}{m['sep'] + '***' if m['pw'] is not None else ''}@", str(url)
    )
    return _SECRET_QUERY.sub(r"\1***", url)


def redact_text(text: str) -> str:
    """``text`` (a file, a traceback, a log line) with ``redact`` applied line by line, so no
    match runs from one line into the next."""
    return "".join(redact(line) or "" for line in text.splitlines(keepends=True))


def first_line(err: BaseException) -> str:
    """An error's first non-empty line, credentials redacted; for a SQLAlchemy error, its
    driver's own message (SQLAlchemy wraps it with the SQL and a help link)."""
    cause = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return (redact(lines[0]) or "") if lines else type(cause).__name__
