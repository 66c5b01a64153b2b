"""Storage and tracking URLs: which store a URL names, and how it is shown; read with
SQLAlchemy's parser, as Optuna's RDBStorage reads them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# make_url hides the password of user:password@host, not secrets passed as query arguments.
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|secret|token|access_token)=)[^&#]*", re.I)


def journal_path(url: str) -> Path | None:
    """The file of ``journal:///abs``, ``journal:rel`` or a .journal, .log or .jsonl path."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    if "://" not in url and url.endswith((".journal", ".log", ".jsonl")):
        return Path(url)
    return None


def parse(url: str) -> URL | None:
    """The SQLAlchemy URL, or None when ``url`` is not of the ``dialect://...`` form."""
    import sqlalchemy.engine
    import sqlalchemy.exc

    if "://" not in url:
        return None
    try:
        return sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return None


def backend(url: str) -> str | None:
    """The database kind (``sqlite``, ``postgresql``, ``mysql``...), None for a non-URL."""
    parsed = parse(url)
    return parsed.get_backend_name() if parsed is not None else None


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for other URLs and in-memory SQLite."""
    parsed = parse(url)
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database) if parsed.database not in (None, "", ":memory:") else None


def redact(url: str) -> str:
    """``url`` with its password and query secrets as ``***`` (``postgresql://u:***@h/db``)."""
    parsed = parse(url)
    if parsed is not None and parsed.password is not None:
        # Only the userinfo changes: rendering the parsed URL back would re-quote the rest.
        scheme, _, rest = url.partition("://")
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        userinfo, _, host = rest[:end].rpartition("@")
        url = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{rest[end:]}"
    return _QUERY_SECRET.sub(r"\1***", url)
