"""Hide passwords in storage URLs before they are logged anywhere."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url"]

_MASK = "***"
_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "secret", "token", "access_token"}
# Fallback for strings urlsplit cannot parse (e.g. an invalid port): mask "user:pw@".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][\w+.\-]*://)(?P<user>[^:/@]*):[^@/]*@")


def redact_url(url: str) -> str:
    """Mask the password of a database or server URL.

    ``postgresql://user:secret@host/db`` becomes ``postgresql://user:***@host/db``; query
    parameters such as ``?password=...`` are masked too. Paths and URLs without
    credentials (``sqlite:///optuna.db``, ``./journal.log``) come back unchanged.

    Args:
        url: A storage or tracking URL, or a plain path.

    Returns:
        The URL with every secret replaced by ``***``.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:{_MASK}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
                query = urlencode(
                    [(k, _MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                    safe="*/",
                )
        if (netloc, query) == (parts.netloc, parts.query):
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return _USERINFO.sub(rf"\g<scheme>\g<user>:{_MASK}@", url)
