"""The errors a user can cause, and how their values are shown in one-line messages.

The CLI catches :class:`UserError` (one line, exit 2) by importing only this light module.
"""

from __future__ import annotations

MAX_SHOWN = 80
# A path or URL is the user's own name for a file: shown whole up to a sane length, or the
# message would not say which file.
MAX_PATH_SHOWN = 300


class UserError(Exception):
    """A bad parameter, file or store: one line naming the parameter, the value and the fix."""


class ConfigError(UserError, ValueError):
    """A parameter was not accepted."""


class WorkersFailedError(RuntimeError):
    """A worker task failed or the cluster went away: not the user's input, so exit 1, not 2."""


def quote(value: object, limit: int = MAX_SHOWN) -> str:
    """Quote a (possibly hostile) input for an error message.

    At most ``limit`` characters are shown, control characters escaped, so a binary file or a
    200 MB line cannot flood the terminal or break the one-line message.

    Args:
        value: The input; bytes are decoded as UTF-8 with replacement characters.
        limit: Most characters shown, escapes included.

    Returns:
        The text in single quotes, ending in ``...`` when it was cut.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value[: limit * 4]).decode("utf-8", "replace")
        cut = len(value) > limit * 4
    else:
        text, cut = str(value), False
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    if cut or len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"'{shown}'"


def quote_path(value: object) -> str:
    """Quote a path, URL or model URI like :func:`quote`, cut only past MAX_PATH_SHOWN."""
    return quote(value, MAX_PATH_SHOWN)
