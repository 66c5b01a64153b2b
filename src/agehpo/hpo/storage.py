"""Optuna storages by URL, the shared trial budget, and the lock that keeps it exact.

Several workers (threads, processes, machines) share one study. Each claims a trial under a
lock that every worker of that storage can see, so the study ends with exactly ``n_trials``
trials however many workers race for the last one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from agehpo.errors import UserError
from agehpo.hpo.liveness import HEARTBEAT_ATTR, retry_trial
from optuna_mlflow import redact_url as redact

HEARTBEAT_INTERVAL_S = 10
HEARTBEAT_GRACE_PERIOD_S = 30
SQLITE_BUSY_TIMEOUT_S = 60
JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
_logger = logging.getLogger(__name__)


class StorageError(UserError, ValueError):
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


def heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in seconds.

    ``AGEHPO_HEARTBEAT_INTERVAL`` and ``AGEHPO_HEARTBEAT_GRACE`` override the defaults (10 s
    and 30 s): a dead worker's trial is failed and retried once its grace period passes.
    """
    interval = int(os.environ.get("AGEHPO_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_S))
    grace = int(os.environ.get("AGEHPO_HEARTBEAT_GRACE", HEARTBEAT_GRACE_PERIOD_S))
    return interval, grace


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal-file storage with heartbeats, so Optuna's stale-trial machinery works on it.

    The journal backend has no heartbeat of its own. Here a running trial's heartbeat is a
    system attr written every ``heartbeat_interval`` seconds; a RUNNING trial silent for
    longer than ``grace_period`` belongs to a dead worker, and ``fail_stale_trials`` fails
    (and, through the callback, retries) it as it does for RDB storages.

    Args:
        backend: The journal file backend.
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds of silence after which a running trial is stale.
        stale_trial_callback: Called with each trial failed as stale (e.g. to retry it).
    """

    def __init__(
        self,
        backend: JournalFileBackend,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        deadline = time.time() - self._grace_period
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
            # A trial that has not beaten yet is judged by its start.
            last = max(started, float(trial.system_attrs.get(HEARTBEAT_ATTR, started)))
            if last < deadline:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_trial_callback

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_trial_callback


def repair_journal(path: Path) -> Path | None:
    """Cut a torn last line (a writer died mid-append) off a journal file.

    Optuna's writers append whole lines under the journal's lock, so a partial last line seen
    while holding that lock is torn for good; left alone, the next append would be glued to
    it and every later reader would fail. The original is kept as a backup.

    Returns:
        The backup's path when the file was repaired, else None.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return None
        backup = path.with_name(
            f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.bak"
        )
        shutil.copy2(path, backup)
        with path.open("r+b") as journal:
            journal.truncate(data.rfind(b"\n") + 1)
        _logger.warning(
            "Repaired %s: cut a torn last line of %d bytes (a writer died mid-write); "
            "the original is kept as %s",
            path,
            len(data) - data.rfind(b"\n") - 1,
            backup,
        )
        return backup
    finally:
        lock.release()


def _retry_transient(
    open_once: Callable[[], optuna.storages.BaseStorage], url: str
) -> optuna.storages.BaseStorage:
    """Open a storage, retrying the errors of workers racing to create its schema."""
    delay = 0.2
    for attempt in range(6):
        try:
            return open_once()
        except Exception as error:
            message = str(error).strip()
            if attempt == 5 or not any(
                hint in message
                for hint in ("already exists", "locked", "duplicate key", "Duplicate")
            ):
                first_line = message.splitlines()[0] if message else repr(error)
                raise StorageError(
                    f"storage={redact(url)!r} cannot be opened: {first_line}"
                ) from error
            time.sleep(delay * (1 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")


def open_storage(url: str, *, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open an Optuna storage with crash safety switched on.

    RDB storages and journal files get heartbeats and a stale-trial retry: a trial whose
    worker died becomes FAIL and is retried with the same params
    (:func:`agehpo.hpo.liveness.retry_trial`). SQLite waits for locks instead of failing at once;
    workers creating the same schema at the same moment retry.

    Args:
        url: An SQLAlchemy URL (sqlite, postgresql, mysql) or a journal file (see
            :func:`journal_path`).
        heartbeat: Whether trials record heartbeats.

    Returns:
        The storage.

    Raises:
        StorageError: When the URL is malformed or the database cannot be reached.
    """
    interval, grace = heartbeat_settings()
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_journal(path)
        backend = JournalFileBackend(str(path))
        if not heartbeat:
            return JournalStorage(backend)
        return HeartbeatJournalStorage(backend, interval, grace, retry_trial)
    if "://" not in url:
        raise StorageError(
            f"storage={url!r} is not a storage URL; use e.g. sqlite:///optuna.db, "
            "postgresql://user@host/db, mysql+pymysql://user@host/db or a path ending in .journal"
        )
    engine_kwargs = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    heartbeat_kwargs: dict[str, Any] = (
        {
            "heartbeat_interval": interval,
            "grace_period": grace,
            "heartbeat_stale_trial_callback": retry_trial,
        }
        if heartbeat
        else {}
    )

    def open_once() -> optuna.storages.BaseStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat_kwargs)

    return _retry_transient(open_once, url)


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
            # GET_LOCK gives up after its timeout and returns 0; pg_advisory_lock never does.
            while connection.execute(sqlalchemy.text(lock), {"key": key}).scalar() == 0:
                pass
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(unlock), {"key": key})
