"""Per-test PostgreSQL databases on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
_ADMIN_DBS = ("postgres", "test")


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg2

    last: Exception | None = None
    for dbname in _ADMIN_DBS:
        try:
            connection = psycopg2.connect(
                host=HOST, port=PORT, user=USER, dbname=dbname, connect_timeout=5
            )
        except psycopg2.OperationalError as error:
            last = error
            continue
        connection.autocommit = True
        return connection
    raise ConnectionError(f"PostgreSQL at {HOST}:{PORT} is not reachable: {last}")


# SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg 3, which the project does not
# install (it ships psycopg2-binary); tests name the driver so they test the code, not that.
DRIVER = "postgresql+psycopg2"


def url(dbname: str, driver: str = DRIVER) -> str:
    """SQLAlchemy URL of a database on the local server."""
    return f"{driver}://{USER}@{HOST}:{PORT}/{dbname}"


def require_postgres() -> None:
    """Skip the test when the local PostgreSQL server does not answer."""
    try:
        _admin_connection().close()
    except (ConnectionError, ImportError) as error:
        pytest.skip(str(error))


def create_database(prefix: str = "agehpo") -> str:
    """Create a fresh, empty database; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return name


def drop_database(name: str) -> None:
    """Drop a database, disconnecting whoever is still connected."""
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


@contextlib.contextmanager
def fresh_database(prefix: str = "agehpo", driver: str = DRIVER) -> Iterator[str]:
    """A fresh database's URL for the block; the database is dropped afterwards."""
    require_postgres()
    name = create_database(prefix)
    try:
        yield url(name, driver)
    finally:
        drop_database(name)
