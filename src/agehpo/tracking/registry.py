"""The best model as an MLflow model: log it, read it back, register it as champion.

A trained AgeNet is logged as an MLflow 3 LoggedModel linked to its trial's run (weights as
safetensors plus the params JSON, loaded by :mod:`agehpo.pyfunc` without unpickling, with
agehpo's code inside so it loads where agehpo is not installed), and the study's best is
registered under the model name with the alias ``champion``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from agehpo.data import make_synthetic
from agehpo.nn.train import EpochMetrics
from agehpo.objective import TrainedModel
from agehpo.pyfunc import (
    PARAMS_FILE,
    WEIGHTS_FILE,
    save_weights,
    serving_requirements,
    signature,
)
from optuna_mlflow import ensure_study_uid

MODEL_ARTIFACT_NAME = "age-model"
CHAMPION = "champion"
MODEL_TAG = "agehpo.model_id"
# The optuna_mlflow tag keys a version carries, to tell its study and trial.
STUDY_UID = "optuna.study_uid"
STUDY_NAME = "optuna.study_name"
TRIAL_NUMBER = "optuna.trial_number"


def _input_example() -> Any:
    """One synthetic face in the CSV's ``pixels`` form: what a caller of the model sends."""
    import pandas as pd

    face = make_synthetic(1, seed=0).pixels[0]
    return pd.DataFrame({"pixels": [" ".join(map(str, face))]})


def log_model(client: MlflowClient, trained: TrainedModel, run_id: str) -> str:
    """Log weights as an MLflow 3 LoggedModel linked to the trial's run.

    Args:
        client: Client of the tracking store.
        trained: The weights and params.
        run_id: The trial's run; it gets the tag ``agehpo.model_id``.

    Returns:
        The model id.
    """
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id,
        name=MODEL_ARTIFACT_NAME,
        source_run_id=run_id,
        params={k: str(v) for k, v in trained.params.items()},
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "weights")
        save_weights(weights, trained.params, trained.state_dict, math.isqrt(trained.in_features))
        model_dir = Path(tmp, "model")
        mlflow.pyfunc.save_model(
            model_dir,
            loader_module="agehpo.pyfunc",
            data_path=str(weights),
            signature=signature(),
            input_example=_input_example(),
            code_paths=[str(Path(__file__).resolve().parents[1])],  # the agehpo package
            pip_requirements=serving_requirements(),
            mlflow_model=mlflow.models.Model(model_id=logged.model_id),
        )
        client.log_model_artifacts(logged.model_id, str(model_dir))
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_tag(run_id, MODEL_TAG, logged.model_id)
    return logged.model_id


def logged_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The model logged for a trial's run, by this or any other worker."""
    return client.get_run(run_id).data.tags.get(MODEL_TAG)


def load_logged(model_id: str, tracking_uri: str) -> TrainedModel:
    """Read a logged model's weights back (for a best trial another worker ran)."""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{model_id}", dst_path=tmp, tracking_uri=tracking_uri
            )
        )
        params_file = next(local.rglob(PARAMS_FILE))
        params = json.loads(params_file.read_text())
        state_dict = load_file(params_file.with_name(WEIGHTS_FILE))
    img_size = int(params.pop("img_size"))
    return TrainedModel(params, state_dict, img_size * img_size)


def register_champion(
    client: MlflowClient,
    name: str,
    study: optuna.Study,
    model_id: str,
    run_id: str,
    test: EpochMetrics | None,
    *,
    study_uid: str | None = None,
) -> ModelVersion:
    """Register the study's best model under ``name`` with alias ``champion``; idempotent.

    Versions belong to a study by their ``optuna.study_uid`` tag: a version is reused only
    when it carries this study's uid and its best trial's number, and a version of another
    study (even one of the same name) is never touched. A version registered before uids
    existed is reused (and gets the uid) only when it was registered from ``run_id``.

    Args:
        client: Client of the tracking store.
        name: Registered model name.
        study: The study (its best trial is the champion).
        model_id: The best trial's logged model.
        run_id: The best trial's run; it must carry the study's uid and trial number.
        test: Held-out test metrics, set as version tags.
        study_uid: The study's uid; read from (or stored in) the study when None.

    Returns:
        The model version the alias points at.

    Raises:
        ValueError: When ``run_id`` is not the run of the study's best trial.
    """
    uid = study_uid or ensure_study_uid(study)
    number = str(study.best_trial.number)
    run_tags = client.get_run(run_id).data.tags
    if (run_tags.get(STUDY_UID), run_tags.get(TRIAL_NUMBER)) != (uid, number):
        raise ValueError(
            f"champion of study {study.study_name!r}: expected the run of trial {number} with "
            f"{STUDY_UID}={uid}, received run {run_id} tagged trial "
            f"{run_tags.get(TRIAL_NUMBER)} of {STUDY_UID}={run_tags.get(STUDY_UID)}; "
            "pass the run of the study's best trial"
        )
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="Age-range classifier tuned by agehpo")
    identity = {STUDY_UID: uid, TRIAL_NUMBER: number}
    version = _own_version(client, name, identity, run_id)
    if version is None:
        version = client.create_model_version(
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            model_id=model_id,
            # At creation: a version never exists without the study it belongs to.
            tags={**identity, STUDY_NAME: study.study_name},
        )
    tags = {**identity, STUDY_NAME: study.study_name}
    if test is not None:
        tags.update({name: f"{value:.4f}" for name, value in test.accuracies("test_").items()})
    for key, value in tags.items():
        if version.tags.get(key) != value:
            client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return version


def _own_version(
    client: MlflowClient, name: str, identity: dict[str, str], run_id: str
) -> ModelVersion | None:
    """This study's version of this trial, if registered before (oldest first)."""
    versions = sorted(
        client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
    )
    for version in versions:
        if all(version.tags.get(key) == value for key, value in identity.items()):
            return version
    for version in versions:
        # Registered before study uids: only the version of this very run is ours.
        if STUDY_UID not in version.tags and version.run_id == run_id:
            return version
    return None
