"""Fixtures for the Optuna -> MLflow plugin: real SQLite tracking stores, real studies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import mlflow.tracking.fluent as fluent
import optuna
import pytest
from mlflow import MlflowClient

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def tracking_uri(
    tmp_path: Path, mlflow_db: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """A fresh SQLite tracking store (tests/conftest.py's ``mlflow_db``), also MLflow's default."""
    # A SQLite store keeps artifacts under ./mlruns: inside the test's folder, not the checkout.
    monkeypatch.chdir(tmp_path)
    uri = mlflow_db(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


@pytest.fixture(autouse=True)
def _no_fluent_leftovers() -> Iterator[None]:
    # The fluent API keeps a global active experiment and a per-thread run stack; a test
    # must not inherit another test's.
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)
