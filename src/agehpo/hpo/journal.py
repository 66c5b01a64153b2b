"""A journal file's lines, checked before Optuna replays them.

A damaged line in the middle (a disk error, a hand edit) stops every later reader with a
JSONDecodeError; :func:`check_journal` names it and the repair. A torn *last* line is cut
off when the storage is opened (``agehpo.hpo.storage.repair_journal``).
"""

from __future__ import annotations

import json
from pathlib import Path

from agehpo.errors import ConfigError, quote, quote_path

# Optuna's entries are a few hundred bytes; a longer line is not one, and is not read whole.
MAX_ENTRY_BYTES = 16 << 20


def check_journal(path: str | Path, *, param: str = "storage") -> int:
    """Check that every complete line of a journal file is an Optuna journal entry.

    Args:
        path: The journal file; a missing or empty file passes (Optuna creates it).
        param: The parameter that named the file, for the message.

    Returns:
        The number of complete entries.

    Raises:
        ConfigError: Naming the file, the first damaged line and how to repair it.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise ConfigError(
            f"{param}={quote_path(str(path))} cannot be read ({error.strerror or error}); "
            "expected a readable Optuna journal file"
        ) from None
    lineno = 0
    with handle:
        while True:
            line = handle.readline(MAX_ENTRY_BYTES + 1)
            if not line:
                return lineno
            lineno += 1
            reason: str | None
            if not line.endswith(b"\n"):
                if len(line) <= MAX_ENTRY_BYTES:  # short and unterminated: the end of the file
                    return lineno - 1  # a torn last line: repair_journal cuts it
                reason = f"longer than {MAX_ENTRY_BYTES} bytes"
            else:
                reason = _entry_problem(line)
            if reason is not None:
                raise _damaged(path, param, lineno, reason, line)


def _entry_problem(line: bytes) -> str | None:
    """Why a complete line is not a journal entry, or None when it is one."""
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" at column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        return f"not valid JSON{where}"
    if not isinstance(entry, dict) or "op_code" not in entry:
        return "JSON but not an Optuna operation (no op_code)"
    return None


def _damaged(path: Path, param: str, lineno: int, reason: str, line: bytes) -> ConfigError:
    shown = quote(line.rstrip(b"\r\n"), 40)
    return ConfigError(
        f"{param}={quote_path(str(path))} line {lineno} is damaged ({reason}: {shown}); Optuna "
        "cannot read past it. To repair: keep a copy, then keep only the lines before it "
        f"(head -n {lineno - 1} FILE > FILE.fixed && mv FILE.fixed FILE); what was recorded "
        "after it is lost"
    )
