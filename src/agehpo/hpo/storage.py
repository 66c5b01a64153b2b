"""Optuna storages by URL, and the lock all their workers claim trials under (exact budget)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from filelock import FileLock
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from agehpo import _compat
from agehpo.errors import UserError
from agehpo.hpo.liveness import HEARTBEAT_ATTR, last_sign_of_life, quietly, retry_trial
from agehpo.retry import is_race, retry
from agehpo.urls import backend, journal_path, parse, redact, sqlite_file

SQLITE_BUSY_TIMEOUT_S = 60
_Callback = Callable[[optuna.Study, FrozenTrial], None]
_logger = logging.getLogger(__name__)


class StorageError(UserError, ValueError):
    """The storage URL is malformed or the storage cannot be reached."""


def heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in s; ``AGEHPO_HEARTBEAT_INTERVAL``/``_GRACE``."""
    interval = int(os.environ.get("AGEHPO_HEARTBEAT_INTERVAL", 10))
    return interval, int(os.environ.get("AGEHPO_HEARTBEAT_GRACE", 30))


class HeartbeatJournalStorage(JournalStorage, _compat.Heartbeat):
    """A journal storage with heartbeats (a system attr), for Optuna's ``fail_stale_trials``."""

    def __init__(
        self,
        backend: JournalFileBackend,
        heartbeat_interval: float,
        grace_period: float,
        stale_trial_callback: _Callback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.stale_trial_callback, self.clock = stale_trial_callback, clock

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, self.clock())

    def stale_trial_ids(self, study_id: int) -> list[int]:
        now, running = self.clock(), (TrialState.RUNNING,)
        trials = self.get_all_trials(study_id, deepcopy=False, states=running)
        stale = [t for t in trials if now - last_sign_of_life(t, now) > self.grace_period]
        return [_compat.trial_id(t) for t in stale]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval  # type: ignore[return-value]  # Optuna waits on floats

    def get_heartbeat_stale_trial_callback(self) -> _Callback | None:
        return self.stale_trial_callback


def repair_journal(path: Path) -> Path | None:
    """Cut a torn last line off a journal file (under its lock, it is torn for good);
    returns the backup's path when the file was repaired, else None."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return None
        stamp, keep = time.strftime("%Y%m%d-%H%M%S"), data.rfind(b"\n") + 1
        backup = path.with_name(f"{path.name}.torn-{stamp}-{os.getpid()}.bak")
        shutil.copy2(path, backup)
        with path.open("r+b") as journal:
            journal.truncate(keep)
        message = "Repaired %s: cut a torn last line of %d bytes (a writer died mid-write); "
        _logger.warning(message + "the original is kept as %s", path, len(data) - keep, backup)
        return backup
    finally:
        lock.release()


def open_storage(url: str, *, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open an SQLAlchemy URL or a journal file: heartbeats retry dead workers' trials, SQLite
    waits for locks; raises StorageError when it is malformed or cannot be reached."""
    interval, grace = heartbeat_settings()
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_journal(path)
        journal = JournalFileBackend(str(path))
        if heartbeat:
            return HeartbeatJournalStorage(journal, interval, grace, retry_trial)
        return JournalStorage(journal)
    if parse(url) is None:
        raise StorageError(
            f"storage={url!r} is not a storage URL; use e.g. sqlite:///optuna.db, "
            "postgresql://user@host/db, mysql+pymysql://user@host/db or a path ending in .journal"
        )
    kwargs: dict[str, Any] = {"heartbeat_interval": interval, "grace_period": grace}
    kwargs = {**kwargs, "heartbeat_stale_trial_callback": retry_trial} if heartbeat else {}
    if backend(url) == "sqlite":
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    try:  # workers creating one schema at the same moment retry
        return retry(
            lambda: quietly(RDBStorage, url, **kwargs),
            delay_s=0.2,
            retryable=lambda e: is_race(e, creating_schema=True),
        )
    except Exception as error:
        reason = (str(error).strip().splitlines() or [repr(error)])[0]
        raise StorageError(f"storage={redact(url)!r} cannot be opened: {reason}") from error


class BudgetLock:
    """The lock guarding a study's budget, shared by all workers of one storage: a file beside
    SQLite and journal stores, a database advisory lock on PostgreSQL and MySQL."""

    def __init__(self, url: str, study_name: str) -> None:
        self._thread_lock = threading.Lock()
        path = journal_path(url) or sqlite_file(url)
        self._file_lock = FileLock(f"{path}.budget.lock") if path is not None else None
        self._engine = None
        self._sql: tuple[str, str, int | str]
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:7], "big")
        if path is None and backend(url) == "postgresql":
            self._sql = ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", key)
        elif path is None and backend(url) == "mysql":  # GET_LOCK returns 0 after 60 s
            self._sql = ("SELECT GET_LOCK(:key, 60)", "SELECT RELEASE_LOCK(:key)", f"agehpo-{key}")
        else:
            return
        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for a short critical section (count the trials, claim one)."""
        with self._thread_lock, self._file_lock or contextlib.nullcontext():
            if self._engine is None:
                yield
                return
            lock, unlock, key = self._sql
            with self._engine.connect() as connection:
                while connection.execute(sqlalchemy.text(lock), {"key": key}).scalar() == 0:
                    pass
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text(unlock), {"key": key})
