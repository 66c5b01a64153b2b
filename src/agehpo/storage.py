"""Optuna storages by URL, the shared trial budget, and the lock that keeps it exact.

Several workers (threads, processes, machines) share one study. Each claims a trial under a
lock that every worker of that storage can see, so the study ends with exactly ``n_trials``
trials however many workers race for the last one.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

HEARTBEAT_INTERVAL_S = 10
HEARTBEAT_GRACE_PERIOD_S = 30
JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")


class StorageError(ValueError):
    """The storage URL is malformed or the storage cannot be reached. One-line message."""


def journal_path(url: str) -> Path | None:
    """The journal file a storage URL names, or None for database URLs.

    ``journal:///abs/path``, ``journal:rel/path`` and plain paths ending in .journal, .log or
    .jsonl are journal files.
    """
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    if "://" not in url and url.endswith(JOURNAL_SUFFIXES):
        return Path(url)
    return None


def open_storage(url: str, *, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open an Optuna storage with crash safety switched on.

    RDB storages get heartbeats and Optuna's stale-trial retry (a trial whose worker died
    becomes FAIL and is retried once). Journal files have no heartbeat; the runner sweeps them.

    Args:
        url: An SQLAlchemy URL (sqlite, postgresql, mysql) or a journal file (see
            :func:`journal_path`).
        heartbeat: Whether RDB storages record heartbeats.

    Returns:
        The storage.

    Raises:
        StorageError: When the URL is malformed or the database cannot be reached.
    """
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise StorageError(
            f"storage={url!r} is not a storage URL; use e.g. sqlite:///optuna.db, "
            "postgresql://user@host/db, mysql+pymysql://user@host/db or a path ending in .journal"
        )
    try:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" in Optuna 5 but are its only stale-trial mechanism.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if not heartbeat:
                return RDBStorage(url)
            return RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise StorageError(f"storage={redact(url)!r} cannot be opened: {first_line}") from error


def redact(url: str) -> str:
    """Hide the password of a URL, so it can be logged or shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class BudgetLock:
    """A lock every worker of one storage shares: threads, processes and machines.

    SQLite and journal files lock a file beside the store; PostgreSQL and MySQL take a
    database advisory lock, which works across machines.

    Args:
        url: The storage URL.
        study_name: The study whose budget the lock guards.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self._thread_lock = threading.Lock()
        self._file_lock: FileLock | None = None
        self._engine = None
        self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:7], "big")
        path = journal_path(url)
        if path is None and url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
        if path is not None and str(path) not in ("", ":memory:"):
            self._file_lock = FileLock(f"{path}.budget.lock")
        elif url.startswith(("postgresql", "mysql")):
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for a short critical section (count trials, claim one)."""
        with self._thread_lock, self._process_lock():
            yield

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        if self._file_lock is not None:
            with self._file_lock:
                yield
            return
        if self._engine is None:
            yield
            return
        import sqlalchemy

        postgres = self._engine.dialect.name == "postgresql"
        lock, unlock = (
            ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)")
            if postgres
            else ("SELECT GET_LOCK(:key, 60)", "SELECT RELEASE_LOCK(:key)")
        )
        key: int | str = self._key if postgres else f"agehpo-{self._key}"
        with self._engine.connect() as connection:
            connection.execute(sqlalchemy.text(lock), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(unlock), {"key": key})
