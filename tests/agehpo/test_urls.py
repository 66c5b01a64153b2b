"""Storage URLs: journal files, database kinds, SQLite files and redaction, exact outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agehpo.urls import backend, journal_path, parse, redact, sqlite_file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),
        (
            "postgresql://alice:s3cr3t@db.example:5432/optuna",
            "postgresql://alice:***@db.example:5432/optuna",
        ),
        ("postgresql://bob:p%40ss@host/db", "postgresql://bob:***@host/db"),
        (
            "mysql+pymysql://root:hunter2@127.0.0.1/optuna",
            "mysql+pymysql://root:***@127.0.0.1/optuna",
        ),
        (
            "postgresql://u@h/db?sslmode=require&password=hunter2&token=abc#frag",
            "postgresql://u@h/db?sslmode=require&password=***&token=***#frag",
        ),
        ("mysql+pymysql://u:pw@h/db?PWD=x", "mysql+pymysql://u:***@h/db?PWD=***"),
        ("https://user:tok@mlflow.example/api?x=1", "https://user:***@mlflow.example/api?x=1"),
    ],
)
def test_redact_masks_passwords_and_query_secrets_and_keeps_the_rest(
    url: str, expected: str
) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice@db/optuna",
        "sqlite:///optuna.db",
        "sqlite:////abs/dir/optuna.db",
        "optuna.journal",
        "journal:///a/b",
        "/tmp/with space/optuna.db",
        "relative/p@th:with/colons.journal",
        "http://127.0.0.1:5000",
        "",
    ],
)
def test_redact_leaves_urls_without_secrets_and_plain_paths_alone(url: str) -> None:
    assert redact(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("journal:///abs/dir/study.journal", Path("/abs/dir/study.journal")),
        ("journal:rel/dir/study", Path("rel/dir/study")),
        ("optuna.journal", Path("optuna.journal")),
        ("runs/optuna.log", Path("runs/optuna.log")),
        ("/tmp/x/optuna.jsonl", Path("/tmp/x/optuna.jsonl")),
        ("sqlite:///optuna.db", None),
        ("sqlite:///weird.journal", None),
        ("postgresql://u@h/db", None),
        ("optuna.db", None),
    ],
)
def test_journal_path_forms(url: str, expected: Path | None) -> None:
    assert journal_path(url) == expected


@pytest.mark.parametrize(
    ("url", "kind", "file"),
    [
        ("sqlite:///optuna.db", "sqlite", Path("optuna.db")),
        ("sqlite:////abs/dir/optuna.db", "sqlite", Path("/abs/dir/optuna.db")),
        ("sqlite://", "sqlite", None),
        ("sqlite:///:memory:", "sqlite", None),
        ("postgresql+psycopg2://u@h:5432/db", "postgresql", None),
        ("mysql+pymysql://root@127.0.0.1/optuna", "mysql", None),
        ("optuna.journal", None, None),
        ("optuna.db", None, None),
        ("postgresql://u@h:notaport/db", None, None),
    ],
)
def test_backend_and_sqlite_file(url: str, kind: str | None, file: Path | None) -> None:
    assert backend(url) == kind
    assert sqlite_file(url) == file
    assert (parse(url) is None) == (kind is None)
