"""The best model as an MLflow 3 LoggedModel, read back, registered with alias ``champion``."""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from pathlib import Path

import mlflow
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from agehpo.data import make_synthetic
from agehpo.nn.model import TrainedModel
from agehpo.nn.train import EpochMetrics
from agehpo.pyfunc import PARAMS_FILE, WEIGHTS_FILE, save_weights, serving_requirements, signature
from optuna_mlflow import ensure_study_uid

MODEL_ARTIFACT_NAME = "age-model"
CHAMPION = "champion"
MODEL_TAG = "agehpo.model_id"
# The optuna_mlflow tag keys a version carries, to tell its study and trial.
STUDY_UID = "optuna.study_uid"
STUDY_NAME = "optuna.study_name"
TRIAL_NUMBER = "optuna.trial_number"


def log_model(client: MlflowClient, trained: TrainedModel, run_id: str) -> str:
    """Log weights as an MLflow 3 LoggedModel linked to (and tagged on) ``run_id``; its id."""
    logged = client.create_logged_model(
        client.get_run(run_id).info.experiment_id,
        name=MODEL_ARTIFACT_NAME,
        source_run_id=run_id,
        params={k: str(v) for k, v in trained.params.items()},
    )
    face = make_synthetic(1, seed=0).pixels[0]  # the CSV's ``pixels`` form: what callers send
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "weights")
        save_weights(weights, trained.params, trained.state_dict, math.isqrt(trained.in_features))
        model_dir = Path(tmp, "model")
        mlflow.pyfunc.save_model(
            model_dir,
            loader_module="agehpo.pyfunc",
            data_path=str(weights),
            signature=signature(),
            input_example=pd.DataFrame({"pixels": [" ".join(map(str, face))]}),
            code_paths=[str(Path(__file__).resolve().parents[1])],  # the agehpo package
            pip_requirements=serving_requirements(),
            mlflow_model=mlflow.models.Model(model_id=logged.model_id),
        )
        client.log_model_artifacts(logged.model_id, str(model_dir))
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_tag(run_id, MODEL_TAG, logged.model_id)
    return logged.model_id


def load_logged(model_id: str, tracking_uri: str) -> TrainedModel:
    """Read a logged model's weights back (for a best trial another worker ran)."""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"models:/{model_id}"
        local = mlflow.artifacts.download_artifacts(uri, dst_path=tmp, tracking_uri=tracking_uri)
        params_file = next(Path(local).rglob(PARAMS_FILE))
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

    Only a version with this study's uid and best trial number (or a pre-uid one of ``run_id``)
    is reused; ValueError when ``run_id`` is not the run of the study's best trial. ``test``
    metrics become version tags; ``study_uid`` None: read from (or stored in) the study."""
    identity = {STUDY_UID: study_uid or ensure_study_uid(study)}
    identity[TRIAL_NUMBER] = str(study.best_trial.number)
    run_tags = client.get_run(run_id).data.tags
    if any(run_tags.get(key) != value for key, value in identity.items()):
        raise ValueError(
            f"champion of study {study.study_name!r}: expected the run of trial "
            f"{identity[TRIAL_NUMBER]} with {STUDY_UID}={identity[STUDY_UID]}, received run "
            f"{run_id} tagged trial {run_tags.get(TRIAL_NUMBER)} of "
            f"{STUDY_UID}={run_tags.get(STUDY_UID)}; pass the run of the study's best trial"
        )
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="Age-range classifier tuned by agehpo")
    tags = {**identity, STUDY_NAME: study.study_name}
    version = _own_version(client, name, identity, run_id)
    if version is None:  # created with its tags: never a version without its study
        version = client.create_model_version(
            name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
    if test is not None:
        tags.update({key: f"{value:.4f}" for key, value in test.accuracies("test_").items()})
    set_version_tags(client, version, tags)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return version


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version ``name@champion`` points at; None before the first registration."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException as error:
        # No such model, or no alias yet; anything else (a store down) is not an answer.
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_version_tags(client: MlflowClient, version: ModelVersion, tags: dict[str, str]) -> None:
    """Set the tags whose value the version does not carry yet."""
    for key, value in tags.items():
        if version.tags.get(key) != value:
            client.set_model_version_tag(version.name, version.version, key, value)


def _own_version(
    client: MlflowClient, name: str, identity: dict[str, str], run_id: str
) -> ModelVersion | None:
    """This study's version of this trial, else a pre-uid one of this run (oldest first)."""
    versions = sorted(
        client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
    )
    mine = (v for v in versions if all(v.tags.get(k) == x for k, x in identity.items()))
    legacy = (v for v in versions if STUDY_UID not in v.tags and v.run_id == run_id)
    return next(itertools.chain(mine, legacy), None)
