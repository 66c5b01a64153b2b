"""The only place that touches private Optuna or MLflow names; each has a test in test_compat."""

from __future__ import annotations

from typing import Any

import optuna
from mlflow.entities import Dataset
from optuna.storages import BaseStorage


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes."""
    # Study has no public accessor for its storage.
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study."""
    # No public accessor; get_study_id_from_name would need the private storage anyway.
    return study._study_id


def storage_location(storage: BaseStorage) -> tuple[str | None, str | None]:
    """The RDB URL and the journal file path of a storage; None for what it is not."""
    # _CachedStorage, JournalStorage and JournalFileBackend keep storage and path private.
    backend = getattr(storage, "_backend", storage)
    url = getattr(backend, "url", None)  # public on RDBStorage
    path = getattr(backend, "_file_path", None)
    return (url if isinstance(url, str) and url else None), (str(path) if path else None)


def active_experiment_id() -> str | None:
    """The experiment ``mlflow.set_experiment`` made active in this process, if any."""
    import mlflow.tracking.fluent as fluent

    # No public getter; the private _get_experiment_id falls back to Default, which we must not.
    active = getattr(fluent, "_active_experiment_id", None)
    return str(active) if active else None


def dataset_entity(dataset: Any) -> Dataset:
    """The entity of an ``mlflow.data`` dataset, as ``MlflowClient.log_inputs`` takes it."""
    # Only the fluent mlflow.log_input converts publicly, and it needs an active run.
    return dataset._to_mlflow_entity()
