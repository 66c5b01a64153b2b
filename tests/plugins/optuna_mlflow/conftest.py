"""Fixtures for the Optuna -> MLflow plugin: real SQLite tracking stores, real studies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.tracking.fluent as fluent
import optuna
import pytest
from mlflow import MlflowClient

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Creating MLflow's schema takes ~2 s; each test gets a copy of one migrated, empty DB,
    # which is still a fresh store of its own.
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    # The Default experiment's artifact folder is ./mlruns/0 of the cwd at creation time:
    # make it a temporary one, not the checkout.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, _migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store, also MLflow's default for the test."""
    # A SQLite store keeps artifacts under ./mlruns: inside the test's folder, not the checkout.
    monkeypatch.chdir(tmp_path)
    shutil.copy(_migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
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
