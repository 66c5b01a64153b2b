"""Optuna -> MLflow: every trial as a run, live (:class:`MLflowCallback`) or imported after the
fact (:func:`import_study`), all written by one :class:`TrialRunWriter`; see the README."""

from __future__ import annotations

from optuna_mlflow._artifacts import PLOTS, log_dataset, log_study_artifacts
from optuna_mlflow._callback import MLflowCallback
from optuna_mlflow._identity import ensure_study_uid
from optuna_mlflow._importer import ImportedStudy, import_study
from optuna_mlflow._keys import redact_url
from optuna_mlflow._open_storage import (
    NotAnOptunaStorageError,
    OldSchemaError,
    StorageNotFoundError,
    StudyImportError,
    UnknownStudyError,
)
from optuna_mlflow._reconcile import ReconcileReport, reconcile_study
from optuna_mlflow._writer import TrialRunWriter, run_status_for

__all__ = [
    "PLOTS",
    "ImportedStudy",
    "MLflowCallback",
    "NotAnOptunaStorageError",
    "OldSchemaError",
    "ReconcileReport",
    "StorageNotFoundError",
    "StudyImportError",
    "TrialRunWriter",
    "UnknownStudyError",
    "ensure_study_uid",
    "import_study",
    "log_dataset",
    "log_study_artifacts",
    "reconcile_study",
    "redact_url",
    "run_status_for",
]
