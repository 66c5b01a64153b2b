"""The retry policy: real driver errors from SQLite, PostgreSQL and MariaDB, a fake sleep."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from _pg import fresh_database
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS

from agehpo.retry import is_race, retry


def _raised(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


@pytest.fixture
def table(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "t.db", timeout=0, isolation_level=None)
    connection.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT UNIQUE)")
    connection.execute("INSERT INTO t VALUES (1, 'a')")
    yield connection
    connection.close()


def test_sqlite_duplicate_keys_are_races(table: sqlite3.Connection) -> None:
    primary = _raised(lambda: table.execute("INSERT INTO t VALUES (1, 'b')"))
    unique = _raised(lambda: table.execute("INSERT INTO t VALUES (2, 'a')"))
    assert isinstance(primary, sqlite3.IntegrityError) and primary.sqlite_errorcode == 1555
    assert isinstance(unique, sqlite3.IntegrityError) and unique.sqlite_errorcode == 2067
    assert is_race(primary) and is_race(unique)


def test_a_busy_sqlite_database_is_a_race(tmp_path: Path) -> None:
    assert is_race(_sqlite_busy(tmp_path))


def test_an_existing_sqlite_table_is_a_race_only_while_creating_the_schema(
    table: sqlite3.Connection,
) -> None:
    exists = _raised(lambda: table.execute("CREATE TABLE t (x INTEGER)"))
    assert isinstance(exists, sqlite3.OperationalError) and exists.sqlite_errorcode == 1
    assert not is_race(exists)
    assert is_race(exists, creating_schema=True)


def test_a_schema_changed_under_the_statement_is_a_race() -> None:
    # SQLITE_SCHEMA comes only from a schema created by another connection mid-statement
    # (test_storage's six workers opening one new database hit it); here, its code alone.
    changed = sqlite3.OperationalError("database schema has changed")
    changed.sqlite_errorcode = sqlite3.SQLITE_SCHEMA
    assert is_race(changed)


def test_other_errors_are_no_races(table: sqlite3.Connection) -> None:
    syntax = _raised(lambda: table.execute("SELEC 1"))
    assert not is_race(syntax)  # SQLITE_ERROR too: a race only while creating the schema
    assert not is_race(ValueError("duplicate key value violates unique constraint"))
    assert not is_race(MlflowException("already exists", error_code=INVALID_PARAMETER_VALUE))
    assert is_race(MlflowException("experiment exists", error_code=RESOURCE_ALREADY_EXISTS))


def test_a_race_wrapped_by_sqlalchemy_or_raised_from_is_found(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/w.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as connection:
        wrapped = _raised(lambda: connection.exec_driver_sql("INSERT INTO t VALUES (1)"))
    assert isinstance(wrapped, sqlalchemy.exc.IntegrityError)
    assert is_race(wrapped)
    try:
        raise RuntimeError("storage internal error") from wrapped
    except RuntimeError as outer:
        assert is_race(outer)


@pytest.mark.postgres
def test_a_postgresql_unique_violation_is_a_race() -> None:
    with fresh_database() as url:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.begin() as connection:
            error = _raised(lambda: connection.exec_driver_sql("INSERT INTO t VALUES (1)"))
        with engine.begin() as connection:
            table = _raised(lambda: connection.exec_driver_sql("CREATE TABLE t (y INTEGER)"))
        with engine.begin() as connection:
            syntax = _raised(lambda: connection.exec_driver_sql("SELEC 1"))
        engine.dispose()
    assert getattr(error, "orig").pgcode == "23505"  # noqa: B009
    assert getattr(table, "orig").pgcode == "42P07"  # noqa: B009
    assert is_race(error) and is_race(table)
    assert not is_race(syntax)


def test_a_mariadb_duplicate_entry_is_a_race() -> None:
    pymysql = pytest.importorskip("pymysql")
    try:
        connection = pymysql.connect(host="127.0.0.1", user="root", database="test")
    except pymysql.err.OperationalError as error:
        pytest.skip(f"MariaDB at 127.0.0.1:3306 is not reachable: {error}")
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {name} (x INT PRIMARY KEY)")
            cursor.execute(f"INSERT INTO {name} VALUES (1)")
            duplicate = _raised(lambda: cursor.execute(f"INSERT INTO {name} VALUES (1)"))
            exists = _raised(lambda: cursor.execute(f"CREATE TABLE {name} (y INT)"))
            syntax = _raised(lambda: cursor.execute("SELEC 1"))
            cursor.execute(f"DROP TABLE {name}")
    finally:
        connection.close()
    assert duplicate.args[0] == 1062 and exists.args[0] == 1050
    assert is_race(duplicate) and is_race(exists) and not is_race(syntax)


def test_retry_retries_races_with_doubling_pauses_then_returns(tmp_path: Path) -> None:
    pauses: list[float] = []
    results = iter([_sqlite_busy(tmp_path), _sqlite_busy(tmp_path), "done"])

    def call() -> str:
        result = next(results)
        if isinstance(result, BaseException):
            raise result
        return result

    assert retry(call, delay_s=1, sleep=pauses.append) == "done"
    assert len(pauses) == 2
    assert 1 <= pauses[0] <= 2 and 2 <= pauses[1] <= 4


def test_retry_raises_the_last_race_after_all_attempts_and_others_at_once(
    tmp_path: Path,
) -> None:
    pauses: list[float] = []
    calls: list[int] = []
    busy = _sqlite_busy(tmp_path)

    def always_busy() -> None:
        calls.append(1)
        raise busy

    with pytest.raises(sqlite3.OperationalError) as info:
        retry(always_busy, attempts=4, sleep=pauses.append)
    assert info.value is busy and len(calls) == 4 and len(pauses) == 3

    def broken() -> None:
        calls.append(1)
        raise KeyError("not a race")

    calls.clear()
    with pytest.raises(KeyError):
        retry(broken, sleep=pauses.append)
    assert len(calls) == 1 and len(pauses) == 3


def _sqlite_busy(tmp_path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_BUSY: a write to a database another connection holds exclusively."""
    path = tmp_path / f"busy-{uuid.uuid4().hex}.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        error = _raised(lambda: writer.execute("INSERT INTO t VALUES (1)"))
    finally:
        writer.close()
        holder.close()
    assert isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode == 5
    return error
