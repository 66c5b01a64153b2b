"""The champion's report card in MLflow: metrics and files on the parent run, version tags."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from agehpo.evaluation import ReportCard, write_files
from agehpo.tracking.registry import CHAMPION, STUDY_UID, TRIAL_NUMBER, set_version_tags

_logger = logging.getLogger(__name__)
EVALUATION_DIR = "evaluation"
RUN_TAG = "evaluation.run_id"  # on the version: the run whose evaluation/ holds the files
STUDY_UID_ATTR = "optuna_mlflow.study_uid"  # the study's user attr optuna_mlflow keeps it in


def log_report_card(client: MlflowClient, run_id: str, card: ReportCard) -> None:
    """Log the card's metrics (one batch) and its files under ``evaluation/`` of ``run_id``."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in card.metrics().items()])
    with tempfile.TemporaryDirectory(prefix="agehpo-evaluation-") as tmp:
        write_files(card, Path(tmp))
        client.log_artifacts(run_id, tmp, EVALUATION_DIR)


def version_tags(card: ReportCard, run_id: str) -> dict[str, str]:
    """The summary numbers, ``test_{head}_per_class`` JSON and the run that holds the files."""
    tags = {RUN_TAG: run_id} | {k: f"{v:.4f}" for k, v in card.summary_metrics().items()}
    for head, report in card.heads.items():
        per_class = {
            name: {k: round(v, 4) for k, v in values.items()}
            for name, values in report.per_class().items()
        }
        tags[f"test_{head}_per_class"] = json.dumps(per_class, separators=(",", ":"))
    return tags


def tag_champion(
    client: MlflowClient,
    model_name: str,
    study_uid: str | None,
    trial_number: int,
    card: ReportCard,
    run_id: str,
) -> ModelVersion | None:
    """Tag the ``champion`` version with the card (files on ``run_id``) when it is trial
    ``trial_number`` of study ``study_uid``; the version tagged, or None."""
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    owner = (version.tags.get(STUDY_UID), version.tags.get(TRIAL_NUMBER))
    if study_uid is None or owner != (study_uid, str(trial_number)):
        _logger.warning(
            "%s@%s is version %s of study uid %s trial %s, not this study's best (%s trial "
            "%s): its report card is not tagged",
            *(model_name, CHAMPION, version.version, *owner, study_uid, trial_number),
        )
        return None
    set_version_tags(client, version, version_tags(card, run_id))
    return version
