"""Hide passwords in storage URLs before they are logged anywhere."""

from __future__ import annotations

import re

# sqlalchemy's make_url(...).render_as_string(hide_password=True) leaves query secrets
# shown and rejects plain paths and bad ports, so two patterns do it instead.
_USERINFO = re.compile(r"([A-Za-z][\w+.\-]*://[^:/?#@]*):[^/?#]*@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|secret|token|access_token)=)[^&#]*", re.I)


def redact_url(url: str) -> str:
    """Mask the password of a database or server URL with ``***``.

    ``postgresql://user:secret@host/db`` becomes ``postgresql://user:***@host/db``; query
    parameters such as ``?password=...`` are masked too; anything else is unchanged.

    Args:
        url: A storage or tracking URL, or a plain path.

    Returns:
        The URL without secrets.
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1:***@", url, count=1))
