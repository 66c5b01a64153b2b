"""One retry policy for writes that lose a race with another worker (told by code, not text)."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")
# SQLITE_BUSY, _LOCKED, _SCHEMA (another connection changed the schema mid-statement),
# _BUSY_SNAPSHOT, _CONSTRAINT_PRIMARYKEY, _CONSTRAINT_UNIQUE
_SQLITE_RACE = {5, 6, 17, 517, 1555, 2067}
# unique violation, duplicate table, duplicate object, serialization failure, deadlock
_POSTGRES_RACE = {"23505", "42P07", "42710", "40001", "40P01"}
_MYSQL_RACE = {1050, 1062, 1213, 1205}  # table exists, duplicate entry, deadlock, lock wait
_MLFLOW_RACE = {"RESOURCE_ALREADY_EXISTS"}


def is_race(error: BaseException, *, creating_schema: bool = False) -> bool:
    """Whether ``error`` or one it was raised from is a lost race (duplicate, busy, deadlock);
    ``creating_schema``: also SQLite's generic code 1, all it says for "table exists"."""
    sqlite_codes = _SQLITE_RACE | {sqlite3.SQLITE_ERROR} if creating_schema else _SQLITE_RACE
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        orig = getattr(cause, "orig", cause)  # SQLAlchemy wraps the driver's error
        sqlstate = getattr(getattr(orig, "diag", None), "sqlstate", None)  # psycopg 3
        args = getattr(orig, "args", ()) if type(orig).__module__.startswith("pymysql") else ()
        if (
            getattr(orig, "sqlite_errorcode", None) in sqlite_codes
            or (getattr(orig, "pgcode", None) or sqlstate) in _POSTGRES_RACE
            or (args and args[0] in _MYSQL_RACE)
            or getattr(cause, "error_code", None) in _MLFLOW_RACE
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def retry(
    call: Callable[[], _T],
    *,
    attempts: int = 6,
    delay_s: float = 0.1,
    retryable: Callable[[BaseException], bool] = is_race,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``call``, again after a jittered pause doubling from ``delay_s`` while it raises a
    ``retryable`` error; the last of ``attempts`` raises its error."""
    for attempt in range(attempts - 1):
        try:
            return call()
        except Exception as error:
            if not retryable(error):
                raise
        sleep(delay_s * (2**attempt) * (1 + random.random()))
    return call()
