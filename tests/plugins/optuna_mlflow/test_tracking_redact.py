"""redact_url: storage URLs never show a password."""

from __future__ import annotations

import pytest

from optuna_mlflow import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:s3cret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("mysql+pymysql://me:p%40ss@127.0.0.1/optuna", "mysql+pymysql://me:***@127.0.0.1/optuna"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db?user=a&password=x", "postgresql://host/db?user=a&password=***"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("sqlite:////abs/path/optuna.db", "sqlite:////abs/path/optuna.db"),
        ("./journal.log", "./journal.log"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("postgresql://u:pa:ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pw@h:notaport/db", "postgresql://u:***@h:notaport/db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
