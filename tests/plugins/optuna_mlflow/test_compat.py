"""Each private Optuna/MLflow name optuna_mlflow uses (all in _compat) still works upstream."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from optuna_mlflow import _compat


def test_study_storage_and_id_are_the_studys_own(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    optuna.create_study(study_name="first", storage=storage)
    study = optuna.create_study(study_name="second", storage=storage)
    assert _compat.study_storage(study) is storage
    assert _compat.study_id(study) == storage.get_study_id_from_name("second")
    assert _compat.study_id(study) != storage.get_study_id_from_name("first")


def test_storage_location_names_the_url_or_the_journal_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    cached = optuna.create_study(storage=url)  # a URL gets wrapped in _CachedStorage
    assert _compat.storage_location(_compat.study_storage(cached)) == (url, None)
    assert _compat.storage_location(RDBStorage(url)) == (url, None)
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    assert _compat.storage_location(journal) == (None, str(tmp_path / "journal.log"))
    memory = optuna.create_study()
    assert _compat.storage_location(_compat.study_storage(memory)) == (None, None)


def test_active_experiment_id_follows_set_experiment(tracking_uri: str) -> None:
    assert _compat.active_experiment_id() is None
    experiment = mlflow.set_experiment("compat")
    assert _compat.active_experiment_id() == experiment.experiment_id


def test_dataset_entity_is_what_log_inputs_takes(client: MlflowClient) -> None:
    dataset = from_pandas(pd.DataFrame({"a": [1.0, 2.0]}), name="data", source="s3://b/data")
    entity = _compat.dataset_entity(dataset)
    assert isinstance(entity, Dataset)
    assert (entity.name, entity.digest) == ("data", dataset.digest)
    run = client.create_run("0")
    client.log_inputs(run.info.run_id, datasets=[mlflow.entities.DatasetInput(entity)])
    logged = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in logged] == ["data"]
