"""Shared fixtures: tiny data, throwaway stores."""

from __future__ import annotations

import sys
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


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"
