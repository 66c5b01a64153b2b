"""agehpo's use of the optuna_mlflow plugin: the parent run, per-epoch metrics, the summary.

The plugin knows Optuna and MLflow; this module adds what only agehpo knows: which params
describe a run, how a trained AgeNet becomes an MLflow model, and which model is champion.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import mlflow
import optuna
from mlflow.entities import Metric, Param
from optuna.trial import FrozenTrial, TrialState

from agehpo.data import PreparedData
from agehpo.errors import UserError
from agehpo.hpo.storage import BudgetLock, heartbeat_settings
from agehpo.nn.train import EpochMetrics
from agehpo.objective import TrainedModel
from agehpo.study import BestModelKeeper, StudyConfig
from agehpo.tracking.registry import (
    CHAMPION,
    MODEL_TAG,
    load_logged,
    log_model,
    logged_model_id,
    register_champion,
)
from optuna_mlflow import MLflowCallback, redact_url

_T = TypeVar("_T")
METRIC_NAME = "val_age_accuracy"


class TrackingError(UserError, RuntimeError):
    """The MLflow tracking server cannot be reached. One-line message."""


def check_tracking_server(tracking_uri: str | None = None, timeout_s: float = 10.0) -> None:
    """Fail fast, before any training, when an HTTP tracking server does not answer.

    MLflow's client retries a refused connection for minutes; a server that is down for good
    should stop the study at once with one line instead.

    Raises:
        TrackingError: When ``GET <uri>/health`` fails.
    """
    import urllib.error
    import urllib.request

    uri = tracking_uri or mlflow.get_tracking_uri()
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={redact_url(uri)!r} is unreachable ({reason}); start the "
            "server (mlflow server --host ... --port ...) or point MLFLOW_TRACKING_URI at it"
        ) from error


def _param_text(value: object) -> str:
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _retry_conflicts(write: Callable[[], _T], attempts: int = 5) -> _T:
    """Run an MLflow write that can collide with another process writing the same row.

    Concurrent workers create the same registered model, dataset or tag; the loser of such a
    race gets a unique-key error, after which the row exists and a retry succeeds.
    """
    for attempt in range(attempts):
        try:
            return write()
        except mlflow.exceptions.MlflowException as error:
            conflict = any(
                hint in str(error) for hint in ("duplicate key", "UNIQUE", "already exists")
            )
            if not conflict or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


class StudyTracker:
    """Tracks one study invocation in MLflow.

    Args:
        config: The run's parameters (logged on the parent run, storage redacted).
        keeper: Holds this process's best weights; its trial's model is logged when the trial
            becomes the study's best.
        tracking_uri: The store; None means MLflow's own default (``MLFLOW_TRACKING_URI``).
        parent_run_id: Run to nest trial runs under; None: the MLflow Project run, else a
            new run named after the study.
    """

    def __init__(
        self,
        config: StudyConfig,
        keeper: BestModelKeeper,
        tracking_uri: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self.config = config
        self.keeper = keeper
        self.callback = MLflowCallback(
            tracking_uri=tracking_uri,
            metric_name=METRIC_NAME,
            trial_end_hooks=[self._log_model_if_best],
            legacy_tags=False,
            # agehpo's layout: a parent run (the MLflow Project run under `mlflow run`) with
            # the trials nested under it as trial-{n}.
            parent_run=True,
            parent_run_id=parent_run_id,
            heartbeat_interval=heartbeat_settings()[0],
        )
        self.client = self.callback.client
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()

    # -- start --------------------------------------------------------------------------

    def start(self, study: optuna.Study, data: PreparedData, *, describe: bool = True) -> str:
        """Open the parent run, repair what a killed earlier run left, describe the run.

        Args:
            study: The study.
            data: The data the trials train on (logged as the parent's input).
            describe: Log params, tags and the dataset, and repair stale runs: the first
                process of a parent does this; the workers it starts do not.

        Returns:
            The parent run id.
        """
        parent = self._parent(study)
        if describe:
            interval, grace = heartbeat_settings()
            self.callback.reconcile(study, stale_after=max(grace, 3 * interval))
            self._describe(study, parent, data)
        return parent

    def _parent(self, study: optuna.Study) -> str:
        parent = self.callback.start(study)
        if parent is None:  # the callback is built with parent_run=True
            raise RuntimeError(f"study {study.study_name!r}: the tracker opened no parent run")
        return parent

    def _describe(self, study: optuna.Study, parent: str, data: PreparedData) -> None:
        run = self.client.get_run(parent)
        for key, value in {
            "optuna.study_name": study.study_name,
            "optuna.sampler": self.config.sampler,
            "optuna.pruner": self.config.pruner,
        }.items():
            self.client.set_tag(parent, key, value)
        params = {
            name: redact_url(value) if name == "storage" else _param_text(value)
            for name, value in dataclasses.asdict(self.config).items()
        }
        # Under `mlflow run` MLflow already logged the -P values; params are write-once.
        missing = [Param(k, v) for k, v in params.items() if k not in run.data.params]
        if missing:
            self.client.log_batch(parent, params=missing)
        name = "synthetic-faces" if data.source.startswith("synthetic") else Path(data.source).name
        _retry_conflicts(
            lambda: self.callback.log_dataset(study, name, digest=data.digest, source=data.source)
        )

    def close(self, status: str = "FINISHED", end_parent: bool = False) -> None:
        """Flush buffers, stop the parent's heartbeat and end every run this process opened.

        Args:
            status: Terminal status of the parent run when this process opened it (and of
                the given parent with ``end_parent``): FINISHED, FAILED or KILLED.
            end_parent: Also end, when still RUNNING, the parent run this process did not
                open (the ``mlflow run`` run), for when the process that opened it died
                and can no longer end it.
        """
        self.callback.close(status, end_parent=end_parent)

    def epoch_hook(
        self, trial: optuna.trial.BaseTrial, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """Per-epoch metrics of a running study trial, buffered into its run."""
        if isinstance(trial, optuna.Trial):
            self.callback.log_step(trial, epoch, metrics)

    # -- the best model -------------------------------------------------------------------

    def _log_model_if_best(self, study: optuna.Study, trial: FrozenTrial, run_id: str) -> None:
        if trial.state != TrialState.COMPLETE or self.keeper.best is None:
            return
        number, trained = self.keeper.best
        if number == trial.number:
            log_model(self.client, trained, run_id)

    def best_run_id(self, study: optuna.Study) -> str | None:
        """The MLflow run of the study's best trial (never a run of another same-name study)."""
        number = study.best_trial.number
        session = self.callback.session(study)
        run_id = self.callback.run_id_for(number, study_uid=session.study_uid)
        if run_id is None:
            run = session.writer.find_run(number)
            run_id = run.info.run_id if run is not None else None
        return run_id

    # -- end ----------------------------------------------------------------------------

    def fetch_logged(self, study: optuna.Study) -> Callable[[int], TrainedModel | None]:
        """A lookup of the model logged for a trial of ``study``, by any worker."""

        def fetch(number: int) -> TrainedModel | None:
            # The session's writer matches on the study uid, so another study's model of
            # the same trial number is never loaded.
            run = self.callback.session(study).writer.find_run(number)
            model_id = run.data.tags.get(MODEL_TAG) if run is not None else None
            return load_logged(model_id, self.tracking_uri) if model_id else None

        return fetch

    def finish(
        self, study: optuna.Study, best: TrainedModel | None, test: EpochMetrics | None
    ) -> list[str]:
        """Register the champion, log plots and summary metrics, end the runs.

        Args:
            study: The study.
            best: The best trial's weights, logged now if no worker logged them yet.
            test: Their held-out test metrics.

        Returns:
            Lines that tell the user how to look at the results.
        """
        parent = self._parent(study)
        lines: list[str] = []
        run_id = self.best_run_id(study) if best is not None else None
        if best is not None and run_id is not None:
            model_id = logged_model_id(self.client, run_id) or log_model(self.client, best, run_id)
            # Workers finishing together must not register the same version twice.
            with BudgetLock(self.config.storage, f"{self.config.model_name}/registry").hold():
                uid = self.callback.session(study).study_uid
                version = _retry_conflicts(
                    lambda: register_champion(
                        self.client,
                        self.config.model_name,
                        study,
                        model_id,
                        run_id,
                        test,
                        study_uid=uid,
                    )
                )
            lines.append(
                f"Registered models:/{self.config.model_name}@{CHAMPION} "
                f"(version {version.version}, trial {study.best_trial.number})"
            )
        with warnings.catch_warnings():
            # Importance estimates on a few trials warn per parameter; the plot is still right.
            warnings.simplefilter("ignore", UserWarning)
            self.callback.log_study_artifacts(study)
        if test is not None:
            self.client.log_batch(
                parent,
                metrics=[
                    Metric(f"test_{name}", value, int(time.time() * 1000), 0)
                    for name, value in (
                        ("age_accuracy", test.age_accuracy),
                        ("ethnicity_accuracy", test.ethnicity_accuracy),
                        ("gender_accuracy", test.gender_accuracy),
                        ("all_accuracy", test.all_accuracy),
                    )
                ],
            )
        self.close("FINISHED")
        return [*lines, *self.ui_hint()]

    def ui_hint(self) -> list[str]:
        """The `mlflow ui` command for the store in use and the experiment's runs link."""
        uri = self.tracking_uri
        experiment_id = self.callback.experiment_id
        if urlsplit(uri).scheme in ("http", "https"):
            base, command = uri.rstrip("/"), None
        else:
            base, command = "http://127.0.0.1:5000", f"mlflow ui --backend-store-uri {uri}"
        lines = ["See the trials in MLflow:"]
        if command:
            lines.append(f"  {command}")
        lines.append(f"  {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        return lines
