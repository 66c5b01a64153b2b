"""A journal file's lines, checked before Optuna replays them: a damaged middle line stops
every reader, so :func:`check_journal` names it and the repair (a torn *last* line is cut by
``agehpo.hpo.storage.repair_journal``)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from agehpo.errors import ConfigError, quote, quote_path

MAX_ENTRY_BYTES = 16 << 20  # Optuna's entries are a few hundred bytes; longer is not one


def check_journal(path: str | Path) -> int:
    """Check that every complete line of a journal file is an Optuna journal entry; a missing
    or empty file passes (Optuna creates it). Returns the number of complete entries; raises
    ConfigError naming the first damaged line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise ConfigError(
            f"storage={quote_path(str(path))} cannot be read ({error.strerror or error}); "
            "expected a readable Optuna journal file"
        ) from None
    lineno = 0
    with handle:
        for lineno, line in enumerate(iter(partial(handle.readline, MAX_ENTRY_BYTES + 1), b""), 1):
            if not line.endswith(b"\n"):
                if len(line) <= MAX_ENTRY_BYTES:  # a torn last line: repair_journal cuts it
                    return lineno - 1
                reason = f"longer than {MAX_ENTRY_BYTES} bytes"
            else:
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    col = getattr(error, "colno", None)
                    reason = "not valid JSON" + (f" at column {col}" if col else "")
                else:
                    if isinstance(entry, dict) and "op_code" in entry:
                        continue
                    reason = "JSON but not an Optuna operation (no op_code)"
            shown = quote(line.rstrip(b"\r\n"), 40)
            raise ConfigError(
                f"storage={quote_path(str(path))} line {lineno} is damaged ({reason}: {shown}); "
                "Optuna cannot read past it. To repair: keep a copy, then keep only the lines "
                f"before it (head -n {lineno - 1} FILE > FILE.fixed && mv FILE.fixed FILE); "
                "what was recorded after it is lost"
            )
    return lineno
