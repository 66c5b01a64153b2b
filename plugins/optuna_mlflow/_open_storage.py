"""Open an Optuna storage for reading, never changing it: a SQLite file through a temporary
copy (an old schema is upgraded on the copy only), a journal file only read."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from optuna_mlflow._identity import file_identity, sqlite_path, storage_identity, storage_url
from optuna_mlflow._keys import redact_url

_logger = logging.getLogger(__name__)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "oracle", "mssql")


class StudyImportError(ValueError):
    """A study could not be imported; the message is one line that says why."""


class StorageNotFoundError(StudyImportError, FileNotFoundError):
    """The storage file does not exist."""


class NotAnOptunaStorageError(StudyImportError):
    """The file exists but is neither an Optuna RDB (SQLite) nor an Optuna journal."""


class UnknownStudyError(StudyImportError):
    """The storage has no study of that name."""


class OldSchemaError(StudyImportError):
    """A server database written by an older Optuna needs ``optuna storage upgrade``."""


@dataclass
class OpenedStorage:
    """A storage opened for reading; ``source`` says where from, without a password."""

    storage: BaseStorage
    source: str
    upgraded_from: str | None = None  # the old schema of a temporary copy upgraded
    writable: bool = True  # writes reach the original (not a SQLite copy, not a journal)
    identity: str | None = None  # storage_identity of the original, to derive uids


@contextlib.contextmanager
def open_storage(storage: str | os.PathLike[str] | BaseStorage) -> Iterator[OpenedStorage]:
    """An RDB URL, a SQLite or journal file (``file://`` too) or a storage, opened for reading;
    temporary copies are removed on exit."""
    if isinstance(storage, BaseStorage):
        source = storage_url(storage) or type(storage).__name__
        yield OpenedStorage(storage, source, identity=storage_identity(storage))
        return
    text = os.fspath(storage)
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    if scheme == "file":
        text, scheme = text[len("file://") :], ""
    if scheme == "sqlite":
        path = sqlite_path(text)
        if path is None:  # in-memory SQLite: nothing to protect, nothing to import
            raise NotAnOptunaStorageError(f"{text} is an in-memory database; nothing to import")
        with _sqlite_copy(path) as (copy, old):
            yield OpenedStorage(copy, redact_url(text), old, False, file_identity(text))
    elif scheme in _RDB_SCHEMES:
        _check_schema(text)
        storage = RDBStorage(text, skip_table_creation=True)
        yield OpenedStorage(storage, redact_url(text), identity=redact_url(text))
    elif scheme:
        raise NotAnOptunaStorageError(
            f"{redact_url(text)}: unsupported storage URL scheme {scheme!r} "
            f"(use one of {', '.join(_RDB_SCHEMES)}, or a file path)"
        )
    elif _file_kind(path := Path(text).expanduser()) == "sqlite":
        with _sqlite_copy(path) as (copy, old):
            yield OpenedStorage(copy, str(path), old, False, str(path.resolve()))
    else:
        journal = JournalStorage(JournalFileBackend(str(path)))
        yield OpenedStorage(journal, str(path), writable=False, identity=str(path.resolve()))


def _file_kind(path: Path) -> str:
    if not path.exists():
        raise StorageNotFoundError(f"Optuna storage {path} not found (no such file)")
    if path.is_dir():
        raise NotAnOptunaStorageError(f"{path} is a directory, not an Optuna storage file")
    with path.open("rb") as f:
        if f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
            return "sqlite"
        f.seek(0)
        first = f.readline(1 << 20)
    with contextlib.suppress(ValueError):  # not JSON: not a journal
        record = json.loads(first)
        if isinstance(record, dict) and "op_code" in record:
            return "journal"
    what = "an empty file" if not first else "neither a SQLite database nor an Optuna journal"
    raise NotAnOptunaStorageError(f"{path} is not an Optuna storage ({what})")


@contextlib.contextmanager
def _sqlite_copy(path: Path) -> Iterator[tuple[BaseStorage, str | None]]:
    if _file_kind(path) != "sqlite":
        raise NotAnOptunaStorageError(f"{path} is not an Optuna storage (not a SQLite database)")
    with tempfile.TemporaryDirectory(prefix="optuna_mlflow_import_") as tmp:
        copy = Path(tmp) / "storage.db"
        # mode=ro: reading must not even create a journal beside the user's file.
        source = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        with contextlib.closing(source), contextlib.closing(sqlite3.connect(copy)) as target:
            try:
                tables = {r[0] for r in source.execute("select name from sqlite_master")}
                if not {"studies", "trials"} <= tables:
                    raise NotAnOptunaStorageError(
                        f"{path} is not an Optuna storage "
                        "(a SQLite database without Optuna's tables)"
                    )
                source.backup(target)
            except sqlite3.DatabaseError as exc:
                raise NotAnOptunaStorageError(
                    f"{path} is not a readable SQLite database: {exc}"
                ) from exc
        url = f"sqlite:///{copy}"
        upgraded_from = _check_schema(url, path)
        storage = RDBStorage(url, skip_table_creation=True)
        try:
            yield storage, upgraded_from
        finally:
            storage.engine.dispose()


def _check_schema(url: str, copy_of: Path | None = None) -> str | None:
    """The old schema at ``url``, if any: a temporary copy (of ``copy_of``) is upgraded, a
    server database is an error."""
    shown = redact_url(url) if copy_of is None else str(copy_of)
    try:
        rdb = RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
        current, head = rdb.get_current_version(), rdb.get_head_version()
    except Exception as exc:
        if copy_of is not None:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyImportError(f"cannot read Optuna storage {shown}: {first}") from exc
    try:
        if current == head:
            return None
        if copy_of is None:
            hint = " (with the real password)" if "***" in shown else ""
            raise OldSchemaError(
                f"{shown} has Optuna schema {current}, this Optuna needs {head}; upgrade it "
                f"first: optuna storage upgrade --storage {shown}{hint}"
            )
        if current not in rdb.get_all_versions():
            raise StudyImportError(
                f"{shown} was written by a newer Optuna (schema {current}); "
                "upgrade Optuna: pip install -U optuna"
            )
        msg = "%s has Optuna schema %s; read a temporary copy upgraded to %s (file untouched)."
        _logger.info(msg, shown, current, head)
        rdb.upgrade()
        return current
    finally:
        rdb.engine.dispose()
