"""Shared fixtures: tiny data, throwaway stores."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agehpo.data import PreparedData, make_synthetic, prepare

# Tests are imported with --import-mode=importlib (the tree mirrors src/, so a folder such as
# tests/agehpo/data must not shadow the package); their shared helper modules are found here.
for _helpers in ("agehpo", "plugins/optuna_mlflow"):
    sys.path.insert(0, str(Path(__file__).parent / _helpers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the end-to-end tests serial: they time real processes (a stop within 10 s) and
    share the PostgreSQL database, so they run one at a time on one xdist worker."""
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.xdist_group("end-to-end"))


@pytest.fixture(autouse=True)
def _isolated_cache_and_cwd(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Face-table caches of one test must not serve another.
    monkeypatch.setenv("AGEHPO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # Whatever a test writes relative to the cwd (a SQLite store's ./mlruns, optuna.db)
    # lands in a folder of its own, never in the checkout.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def tiny_data() -> PreparedData:
    """A few hundred synthetic faces at 12x12: enough to train a step, fast to make."""
    return prepare(make_synthetic(400, seed=3), img_size=12)


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store whose schema was created once for the whole session."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # The Default experiment's artifact folder is ./mlruns/0 of the cwd at creation time.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def mlflow_db(_migrated_mlflow_db: Path) -> Callable[[Path], str]:
    """Make a fresh MLflow SQLite store in a folder and return its URI.

    Each store is a copy of one migrated, empty store: still a real store of its own, without
    MLflow's schema migrations, which take seconds per store.
    """

    def make(folder: Path) -> str:
        shutil.copy(_migrated_mlflow_db, folder / "mlflow.db")
        return f"sqlite:///{folder}/mlflow.db"

    return make


@pytest.fixture
def tracking_uri(tmp_path: Path, mlflow_db: Callable[[Path], str]) -> str:
    """A fresh SQLite tracking store in the test's folder."""
    return mlflow_db(tmp_path)
