"""register_champion: versions belong to a study by uid; the alias never crosses studies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from _mlflow_helpers import default_store, registered_versions
from mlflow import MlflowClient

from agehpo.nn.train import EpochMetrics
from agehpo.tracking.registry import CHAMPION, register_champion
from optuna_mlflow import MLflowCallback, ensure_study_uid

NAME = "age-predictor"


def _metrics(accuracy: float) -> EpochMetrics:
    return EpochMetrics(
        loss=1.0,
        age_accuracy=accuracy,
        ethnicity_accuracy=accuracy,
        gender_accuracy=accuracy,
        all_accuracy=accuracy,
    )


def _tracked_study(
    root: Path, storage_file: str, uri: str, experiment_id: str
) -> tuple[optuna.Study, str, str]:
    """A tracked study of 3 trials; its best trial's run and a logged model for it."""
    study = optuna.create_study(
        study_name="age-prediction",
        storage=f"sqlite:///{root}/{storage_file}",
        direction="maximize",
    )
    with MLflowCallback(uri, mlflow_kwargs={"experiment_id": experiment_id}) as cb:
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, callbacks=[cb])
        run_id = cb.run_id_for(study.best_trial.number, study_uid=ensure_study_uid(study))
    assert run_id is not None
    client = MlflowClient(uri)
    model = client.create_logged_model(experiment_id, name="age-model", source_run_id=run_id)
    client.finalize_logged_model(model.model_id, "READY")
    return study, run_id, model.model_id


@pytest.fixture
def client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db: Callable[[Path], str]
) -> MlflowClient:
    uri = mlflow_db(tmp_path)
    with default_store(uri, monkeypatch, tmp_path) as store:
        yield store


def test_the_champion_of_b_never_points_at_a_s_version(
    tmp_path: Path, client: MlflowClient
) -> None:
    uri = client.tracking_uri
    experiment = client.create_experiment("age-prediction")
    a, a_run, a_model = _tracked_study(tmp_path, "a.db", uri, experiment)
    a_version = register_champion(client, NAME, a, a_model, a_run, _metrics(0.25))
    a_tags = client.get_model_version(NAME, a_version.version).tags
    assert a_tags["optuna.study_uid"] == ensure_study_uid(a)
    assert a_tags["optuna.trial_number"] == str(a.best_trial.number)

    # Same name, same experiment, another storage: the user started over.
    b, b_run, b_model = _tracked_study(tmp_path, "b.db", uri, experiment)
    b_version = register_champion(client, NAME, b, b_model, b_run, _metrics(0.75))
    assert b_version.version != a_version.version
    champion = client.get_model_version_by_alias(NAME, CHAMPION)
    assert champion.version == b_version.version
    assert champion.tags["optuna.study_uid"] == ensure_study_uid(b)
    assert champion.tags["test_age_accuracy"] == "0.7500"
    assert client.get_model_version(NAME, a_version.version).tags == a_tags  # untouched

    # Registering B again reuses B's version; A's run is refused as B's champion.
    again = register_champion(client, NAME, b, b_model, b_run, _metrics(0.75))
    assert again.version == b_version.version
    assert len(registered_versions(client, NAME)) == 2
    with pytest.raises(ValueError, match=r"expected the run of trial .* received run"):
        register_champion(client, NAME, b, a_model, a_run, _metrics(0.5))
    assert client.get_model_version_by_alias(NAME, CHAMPION).version == b_version.version
    assert client.get_model_version(NAME, a_version.version).tags == a_tags


def test_a_version_registered_before_uids_is_reused_only_for_its_own_run(
    tmp_path: Path, client: MlflowClient
) -> None:
    uri = client.tracking_uri
    experiment = client.create_experiment("age-prediction")
    study, run_id, model_id = _tracked_study(tmp_path, "a.db", uri, experiment)
    client.create_registered_model(NAME)
    legacy = client.create_model_version(
        NAME, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
    )
    version = register_champion(client, NAME, study, model_id, run_id, None)
    assert version.version == legacy.version
    tags = client.get_model_version(NAME, legacy.version).tags
    assert tags["optuna.study_uid"] == ensure_study_uid(study)
    assert len(registered_versions(client, NAME)) == 1
