"""agehpo's use of the optuna_mlflow plugin: the parent run, per-epoch metrics, the champion."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import optuna
from mlflow.entities import Metric
from optuna.trial import FrozenTrial, TrialState

from agehpo.config import StudyConfig
from agehpo.data import PreparedData
from agehpo.errors import UserError
from agehpo.hpo.best import BestModelKeeper
from agehpo.hpo.storage import BudgetLock, heartbeat_settings
from agehpo.names import OBJECTIVE_METRIC
from agehpo.nn.model import TrainedModel
from agehpo.nn.train import EpochMetrics
from agehpo.retry import retry
from agehpo.tracking.registry import (
    CHAMPION,
    MODEL_TAG,
    STUDY_NAME,
    STUDY_UID,
    current_champion,
    load_logged,
    log_model,
    register_champion,
)
from agehpo.tracking.runs import config_params, log_missing_params, ui_hint
from agehpo.urls import redact
from optuna_mlflow import MLflowCallback


class TrackingError(UserError, RuntimeError):
    """The MLflow tracking server cannot be reached. One-line message."""


def check_tracking_server(tracking_uri: str | None = None, timeout_s: float = 10.0) -> None:
    """Raise TrackingError before any training when an HTTP server's ``/health`` fails."""
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
            f"MLFLOW_TRACKING_URI={redact(uri)!r} is unreachable ({reason}); start the "
            "server (mlflow server --host ... --port ...) or point MLFLOW_TRACKING_URI at it"
        ) from error


class StudyTracker:
    """Tracks one study invocation in MLflow; ``keeper``'s weights are logged when their trial
    becomes the best; ``parent_run_id`` None: the Project run or a new one."""

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
            metric_name=OBJECTIVE_METRIC,
            trial_end_hooks=[self._log_model_if_best],
            legacy_tags=False,
            parent_run=True,
            parent_run_id=parent_run_id,
            heartbeat_interval=heartbeat_settings()[0],
        )
        self.client = self.callback.client
        self.named_by_caller = parent_run_id is not None
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()

    def start(self, study: optuna.Study, data: PreparedData, *, describe: bool = True) -> str:
        """Open the parent run (its id); with ``describe`` (not in workers) repair stale runs
        and log params, tags and ``data`` as the parent's input."""
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
        for key, value in {
            "optuna.study_name": study.study_name,
            "optuna.sampler": self.config.sampler,
            "optuna.pruner": self.config.pruner,
        }.items():
            self.client.set_tag(parent, key, value)
        if not self.named_by_caller:  # `mlflow run` names its run at random
            self.client.update_run(parent, name=f"{study.study_name}-{self.config.sampler}")
        log_missing_params(self.client, parent, config_params(self.config))
        name = "synthetic-faces" if data.source.startswith("synthetic") else Path(data.source).name
        # Workers logging one dataset collide (a plain BAD_REQUEST); the write is idempotent.
        retry(
            lambda: self.callback.log_dataset(study, name, digest=data.digest, source=data.source),
            attempts=4,
            retryable=lambda error: isinstance(error, mlflow.exceptions.MlflowException),
        )

    def close(self, status: str = "FINISHED", end_parent: bool = False) -> None:
        """Flush, stop the heartbeat and end (``status``) every run this process opened; with
        ``end_parent`` also a RUNNING parent it did not open."""
        self.callback.close(status, end_parent=end_parent)

    def epoch_hook(
        self, trial: optuna.trial.BaseTrial, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """Per-epoch metrics of a running study trial, buffered into its run."""
        if isinstance(trial, optuna.Trial):
            self.callback.log_step(trial, epoch, metrics)

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

    def fetch_logged(self, study: optuna.Study) -> Callable[[int], TrainedModel | None]:
        """A lookup of the model logged for a trial of ``study``, by any worker."""

        def fetch(number: int) -> TrainedModel | None:
            # The writer matches on the study uid: never another study's model.
            run = self.callback.session(study).writer.find_run(number)
            model_id = run.data.tags.get(MODEL_TAG) if run is not None else None
            return load_logged(model_id, self.tracking_uri) if model_id else None

        return fetch

    def finish(
        self,
        study: optuna.Study,
        best: TrainedModel | None,
        test: EpochMetrics | None,
        *,
        register: bool = True,
    ) -> list[str]:
        """Log ``best`` (tested ``test``) on its trial's run and, with ``register``, register it
        as the champion; log plots and metrics, end runs.

        Returns lines that tell the user how to look at the results."""
        parent = self._parent(study)
        lines: list[str] = []
        run_id = self.best_run_id(study) if best is not None else None
        model_id = None
        if best is not None and run_id is not None:
            model_id = self.client.get_run(run_id).data.tags.get(MODEL_TAG)
            model_id = model_id or log_model(self.client, best, run_id)
        if register and model_id is not None and run_id is not None:
            uid = self.callback.session(study).study_uid
            args = (self.client, self.config.model_name, study, model_id, run_id, test)
            # Workers finishing together must not register the same version twice.
            with BudgetLock(self.config.storage, f"{self.config.model_name}/registry").hold():
                before = retry(lambda: current_champion(self.client, self.config.model_name))
                version = retry(lambda: register_champion(*args, study_uid=uid))
            lines.append(
                f"Registered models:/{self.config.model_name}@{CHAMPION} "
                f"(version {version.version}, trial {study.best_trial.number})"
            )
            if before and before.version != version.version and before.tags.get(STUDY_UID) != uid:
                lines.append(
                    f"  The alias moved from version {before.version} of study "
                    f"{before.tags.get(STUDY_NAME, '?')!r}; to keep each study's champion, "
                    "give each study its own model_name"
                )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.callback.log_study_artifacts(study)
        if test is not None:
            self.client.log_batch(
                parent,
                metrics=[
                    Metric(name, value, int(time.time() * 1000), 0)
                    for name, value in test.accuracies("test_").items()
                ],
            )
        self.close("FINISHED")
        return [*lines, *ui_hint(self.tracking_uri, str(self.callback.experiment_id))]
