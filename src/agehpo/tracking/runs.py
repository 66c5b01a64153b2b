"""MLflow glue shared by the tracker and compare; explicit run ids, never the active run."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import mlflow
from mlflow.entities import Param

from agehpo.config import StudyConfig
from agehpo.retry import retry
from agehpo.urls import redact


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
