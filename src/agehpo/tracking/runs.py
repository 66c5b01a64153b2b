"""MLflow glue shared by the tracker and compare; explicit run ids, never the active run."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import mlflow
from mlflow.entities import Metric, Param

from agehpo.config import StudyConfig
from agehpo.retry import retry
from agehpo.urls import redact

if TYPE_CHECKING:
    from optuna_mlflow import ImportedStudy


def config_params(config: StudyConfig, **extra: str) -> dict[str, str]:
    """The study's parameters (and ``extra``) as MLflow params: dicts as JSON, no password."""
    params = dict(extra)
    for name, value in dataclasses.asdict(config).items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        params[name] = redact(text) if name == "storage" else text
    return params


def log_missing_params(client: mlflow.MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log the params the run does not hold yet (``mlflow run`` logged its ``-P`` values)."""
    logged = client.get_run(run_id).data.params
    missing = [Param(key, value) for key, value in params.items() if key not in logged]
    if missing:
        client.log_batch(run_id, params=missing)


def experiment_id(client: mlflow.MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created when missing; safe when workers race."""

    def get_or_create() -> str:
        experiment = client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment else client.create_experiment(name)

    return retry(get_or_create)


def end_status(error: BaseException | None) -> str:
    """FINISHED without an error, KILLED for Ctrl-C or SIGTERM, FAILED otherwise."""
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def ui_hint(tracking_uri: str, experiment: str, what: str = "the trials") -> list[str]:
    """Lines that show how to see experiment ``experiment``'s runs: ``mlflow ui`` and a link."""
    if urlsplit(tracking_uri).scheme in ("http", "https"):
        base, command = tracking_uri.rstrip("/"), None
    else:
        base, command = "http://127.0.0.1:5000", f"mlflow ui --backend-store-uri {tracking_uri}"
    link = f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    return [f"See {what} in MLflow:", *([f"  {command}"] if command else []), f"  {link}"]


def record_import(run_id: str, storage: str, imported: list[ImportedStudy]) -> None:
    """Sum an import up on the run ``mlflow run -e import_study`` opened (else left empty):
    its name, the storage as a param, and what was created, completed or skipped."""
    client, now_ms = mlflow.MlflowClient(), int(time.time() * 1000)
    client.update_run(run_id, name="import-study")
    log_missing_params(client, run_id, {"storage": redact(storage)})
    counts = {
        "n_studies_imported": sum(not s.tracked_elsewhere for s in imported),
        "n_studies_skipped": sum(s.tracked_elsewhere for s in imported),
        "n_trial_runs_created": sum(s.created for s in imported),
        "n_trial_runs_completed": sum(s.updated for s in imported),
    }
    client.log_batch(
        run_id, metrics=[Metric(key, value, now_ms, 0) for key, value in counts.items()]
    )
