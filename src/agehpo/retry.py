"""One retry policy for writes that lose a race with another worker.

Workers that start together create the same schema, experiment or registered model at the
same moment; the loser gets a duplicate-key or a database-busy error, after which the row
exists and a second try succeeds. Which errors those are is decided by exception type and
error code (:func:`is_race`), never by matching message text.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")
# Error codes of a row or table another writer created first, or of a busy database.
# SQLITE_BUSY, _LOCKED, _BUSY_SNAPSHOT, _CONSTRAINT_PRIMARYKEY, _CONSTRAINT_UNIQUE
_SQLITE_RACE = {5, 6, 517, 1555, 2067}
_POSTGRES_DUPLICATE = {"23505", "42P07", "42710", "40001", "40P01"}  # and serialization
_MYSQL_DUPLICATE = {1050, 1062, 1213, 1205}  # table exists, dup entry, deadlock, lock wait
_MLFLOW_DUPLICATE = {"RESOURCE_ALREADY_EXISTS"}


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_race(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is a lost race, worth a retry.

    Args:
        error: What the write raised.

    Returns:
        True for a duplicate key or table, a busy or locked database, a deadlock, and
        MLflow's RESOURCE_ALREADY_EXISTS.
    """
    for cause in _causes(error):
        orig = getattr(cause, "orig", cause)  # SQLAlchemy wraps the driver's error
        if getattr(orig, "sqlite_errorcode", None) in _SQLITE_RACE:
            return True
        if getattr(orig, "pgcode", None) in _POSTGRES_DUPLICATE:
            return True
        if getattr(getattr(orig, "diag", None), "sqlstate", None) in _POSTGRES_DUPLICATE:
            return True
        args = getattr(orig, "args", ())
        if type(orig).__module__.startswith("pymysql") and args and args[0] in _MYSQL_DUPLICATE:
            return True
        if getattr(cause, "error_code", None) in _MLFLOW_DUPLICATE:
            return True
    return False


def retry(
    call: Callable[[], _T],
    *,
    attempts: int = 6,
    delay_s: float = 0.1,
    retryable: Callable[[BaseException], bool] = is_race,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``call``, again after a jittered, doubling pause while it raises a retryable error.

    Args:
        call: The write.
        attempts: Tries in all.
        delay_s: The first pause.
        retryable: Which errors to retry.
        sleep: The pause (tests pass a fake).

    Returns:
        What ``call`` returned.

    Raises:
        Exception: The last error, or the first one that is not retryable.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if attempt == attempts - 1 or not retryable(error):
                raise
            sleep(delay_s * (2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")
