"""Live tracking: every trial of a running study becomes an MLflow run."""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial

from optuna_mlflow._artifacts import log_dataset, log_study_artifacts
from optuna_mlflow._live import LiveTrialRuns
from optuna_mlflow._reconcile import ReconcileReport, reconcile_study
from optuna_mlflow._session import StudySession

TrialEndHook = Callable[[optuna.Study, FrozenTrial, str], None]


class MLflowCallback:
    """Track an Optuna study in MLflow: a drop-in for ``optuna_integration.MLflowCallback``.

    It writes the runs that wrote, plus what the README lists, and ends every run it opens:
    with its trial, by :meth:`close` (or ``with cb:``), or when collected or at exit.

    Args:
        tracking_uri: Tracking store; None uses MLflow's default.
        metric_name: Objective metric name, or one per objective (else ``{name}_{i}``).
        create_experiment: No parent, no ``experiment_id``: an experiment named after the study.
        mlflow_kwargs: ``experiment_id``, ``run_name``, ``nested``, ``tags`` (of trial runs).
        tag_study_user_attrs: Tag every trial run with the study's user attrs.
        tag_trial_user_attrs: Tag each trial run with its trial's user attrs.
        parent_run: Nest trial runs (``trial-{n}``) under one parent run per study (README).
        parent_run_id: Run to nest the trial runs under; implies ``parent_run``.
        flush_interval: Seconds between writes of buffered :meth:`log_step` metrics.
        trial_end_hooks: ``(study, frozen_trial, run_id)`` callables run before a run ends.
        legacy_tags: Write optuna_integration's tags (``number``, ``state``, ...).
        heartbeat_interval: Seconds between the parent run's heartbeat tags (for reconcile).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        metric_name: str | Sequence[str] = "value",
        create_experiment: bool = True,
        mlflow_kwargs: dict[str, Any] | None = None,
        tag_study_user_attrs: bool = False,
        tag_trial_user_attrs: bool = True,
        *,
        parent_run: bool = False,
        parent_run_id: str | None = None,
        flush_interval: float = 5.0,
        trial_end_hooks: Iterable[TrialEndHook] = (),
        legacy_tags: bool = True,
        heartbeat_interval: float = 60.0,
    ) -> None:
        if not isinstance(metric_name, str | Sequence):
            raise TypeError(
                f"metric_name: expected a string or a sequence of strings, got "
                f"{type(metric_name).__name__} {metric_name!r}; pass e.g. 'value'."
            )
        self._metric_name = metric_name if isinstance(metric_name, str) else list(metric_name)
        parent = parent_run or parent_run_id is not None
        options: dict[str, Any] = {
            "metric_name": self._metric_name,
            "parent": parent,
            "create_experiment": create_experiment,
            "mlflow_kwargs": dict(mlflow_kwargs or {}),
            "tag_study_user_attrs": tag_study_user_attrs,
            "tag_trial_user_attrs": tag_trial_user_attrs,
            "legacy_tags": legacy_tags,
        }
        self.trial_end_hooks: list[TrialEndHook] = list(trial_end_hooks)
        self.client = MlflowClient(tracking_uri)
        given = None
        if parent:
            active = mlflow.active_run()  # captured now: MLflow's end_run() deletes the env var
            given = (
                parent_run_id
                or os.environ.get("MLFLOW_RUN_ID")
                or (active.info.run_id if active is not None else None)
            )
        self._live = LiveTrialRuns(self.client, options, given, flush_interval, heartbeat_interval)
        self._tracking_uri = tracking_uri
        self._fluent_experiment: str | None = None  # the one mlflow.set_experiment made active
        # optuna_integration's users never call close(): end what is open when collected.
        self._finalizer = weakref.finalize(self, self._live.close_at_exit)

    def start(self, study: optuna.Study) -> str | None:
        """Resolve the study's experiment and parent run now; return the parent run id, if any."""
        return self.session(study).parent_run_id

    def session(self, study: optuna.Study) -> StudySession:
        """The study's session: experiment, parent run and trial writer (started if needed)."""
        return self._live.session(study)

    @property
    def parent_run_id(self) -> str | None:
        """Parent run of the (first) tracked study, or the given one; None before start."""
        first = self._live.first_session()
        return first.parent_run_id if first is not None else self._live.given_parent

    @property
    def experiment_id(self) -> str | None:
        """Experiment of the (first) tracked study; None before start."""
        first = self._live.first_session()
        return first.writer.experiment_id if first is not None else None

    def run_id_for(
        self, trial_number: int, study_name: str | None = None, *, study_uid: str | None = None
    ) -> str | None:
        """The run of a trial this callback tracked.

        Args:
            trial_number: Trial number.
            study_name: The trial's study, when tracking several studies.
            study_uid: The trial's study uid; tells apart studies of one name.

        Returns:
            The run id, or None if this callback has no run for that trial.
        """
        return self._live.run_id_for(trial_number, study_name, study_uid)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Write the finished trial into its run, run the hooks, end the run."""
        live = self._live.write(study, trial)
        try:
            for hook in self.trial_end_hooks:
                hook(study, trial, live.run_id)
        finally:
            self._live.end(live, trial)

    def log_step(self, trial: optuna.Trial, step: int, metrics: Mapping[str, float]) -> None:
        """Log per-step metrics of a running trial, sent every ``flush_interval`` s and at its end.

        Args:
            trial: The running trial.
            step: The step (epoch) the values belong to.
            metrics: Metric name -> value.
        """
        self._live.log(self._live.open(trial.study, trial.number), step, metrics)

    def flush(self) -> None:
        """Write every buffered :meth:`log_step` metric now."""
        self._live.flush_all()

    def track_in_mlflow(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator: inside the objective, ``mlflow.log_*`` calls log into the trial's run."""
        return self._track

    def _track(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(trial: optuna.Trial) -> Any:
            live, lock = self._live.open(trial.study, trial.number), self._live.lock
            with lock:  # start_run(run_id=...) refuses a run outside the active experiment
                if self._tracking_uri is not None:
                    mlflow.set_tracking_uri(self._tracking_uri)
                if self._fluent_experiment != live.session.writer.experiment_id:
                    mlflow.set_experiment(experiment_id=live.session.writer.experiment_id)
                    self._fluent_experiment = live.session.writer.experiment_id
            try:
                # MLflow 3's active-run stack is thread-local: each thread resumes its own run.
                with mlflow.start_run(run_id=live.run_id, nested=True):
                    result = func(trial)
            except BaseException as exc:
                if not isinstance(exc, optuna.TrialPruned):
                    # Optuna 5 keeps no fail reason; the callback or close() logs it.
                    live.fail_reason = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception), lock:  # start_run's end undone
                    self.client.update_run(live.run_id, status="RUNNING")
                raise
            with lock:
                self.client.update_run(live.run_id, status="RUNNING")
            return result

        return wrapper

    def reconcile(
        self,
        study: optuna.Study,
        *,
        stale_after: float | None = 600.0,
        all_other_parents_stale: bool = False,
        fill_missing: bool = True,
    ) -> ReconcileReport:
        """Repair runs a killed process left behind (see :func:`reconcile_study`); call it once.

        Args:
            study: The study.
            stale_after: Seconds without a heartbeat after which another parent is dead.
            all_other_parents_stale: Treat every other RUNNING parent as dead.
            fill_missing: Write runs for finished trials that have none.

        Returns:
            What was changed.
        """
        return reconcile_study(
            study,
            self.session(study).writer,
            stale_after=stale_after,
            all_other_parents_stale=all_other_parents_stale,
            fill_missing=fill_missing,
        )

    def log_study_artifacts(
        self, study: optuna.Study, metric_name: str | Sequence[str] | None = None
    ) -> dict[str, str]:
        """Log the study's plots, trial table and counts on its parent run, else the active run.

        Args:
            study: The study.
            metric_name: Objective metric name(s); defaults to the callback's.

        Returns:
            Plot name -> why it was skipped.
        """
        names = self._metric_name if metric_name is None else metric_name
        return log_study_artifacts(
            study, self._summary_run(study), client=self.client, metric_name=names
        )

    def log_dataset(self, study: optuna.Study, name: str, **kwargs: Any) -> None:
        """Log a dataset input (see :func:`optuna_mlflow.log_dataset`) on the study's parent run."""
        log_dataset(self._summary_run(study), name, client=self.client, **kwargs)

    def close(self, status: str = "FINISHED", *, end_parent: bool | None = None) -> None:
        """Flush everything and leave no run of this callback RUNNING (also done at exit).

        Open trial runs are rewritten from Optuna's storage (a trial still RUNNING there
        ends FAILED with ``optuna_mlflow.end_reason``).

        Args:
            status: Terminal status of parent runs started here (FINISHED, FAILED, KILLED).
            end_parent: True also ends a given parent run still RUNNING.
        """
        self._live.close(status, end_parent)

    def __enter__(self) -> MLflowCallback:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        failed = "KILLED" if exc_type and issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        self.close("FINISHED" if exc_type is None else failed)

    def _summary_run(self, study: optuna.Study) -> str:
        """The run that takes study-level data: the parent run, else the active run."""
        if (parent := self.start(study)) is not None:
            return parent
        if (active := mlflow.active_run()) is None:
            raise ValueError(
                f"study {study.study_name!r}: expected a parent run to log study-level data "
                "on, found none (no parent_run, no active MLflow run); build the callback "
                "with parent_run=True, or call it inside mlflow.start_run()."
            )
        return active.info.run_id
