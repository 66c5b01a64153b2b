"""Live tracking: every trial of a running study becomes a nested MLflow run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial

from optuna_mlflow._artifacts import log_study_artifacts
from optuna_mlflow._datasets import log_dataset
from optuna_mlflow._fluent import FluentTrialRuns
from optuna_mlflow._heartbeat import ParentHeartbeat
from optuna_mlflow._identity import ensure_study_uid
from optuna_mlflow._live import LiveTrialRuns
from optuna_mlflow._reconcile import ReconcileReport, reconcile_study
from optuna_mlflow._session import StudySession, context_tags

__all__ = ["MLflowCallback"]

TrialEndHook = Callable[[optuna.Study, FrozenTrial, str], None]


class MLflowCallback:
    """Track an Optuna study in MLflow: a parent run with one nested run per trial.

    A drop-in successor of the deprecated ``optuna_integration.MLflowCallback``: same
    constructor arguments, same :meth:`track_in_mlflow` decorator. On top: trial runs are
    nested under a parent run, carry the intermediate values as metric history, end
    FINISHED (COMPLETE, PRUNED) or FAILED (FAIL) with an ``optuna.trial_state`` tag, and
    the objective can log extra per-step metrics with :meth:`log_step`, batched.

    Only :class:`~mlflow.MlflowClient` calls with explicit run ids are used, never MLflow's
    active run, so with ``n_jobs > 1`` threads never mix runs. (The one exception is the
    :meth:`track_in_mlflow` decorator, which resumes the trial's run with
    ``mlflow.start_run``; MLflow 3 keeps the active-run stack per thread, so that is safe
    too.) Several worker processes may share one store and one parent run: each callback
    only writes the trials its own process ran.

    Args:
        tracking_uri: Tracking store; None uses MLflow's default (``MLFLOW_TRACKING_URI``).
        metric_name: Name of the objective metric; for several objectives one name per
            objective or one name broadcast as ``{name}_{i}``. Intermediate values are
            logged as the history of the (first) objective metric.
        create_experiment: Without a parent run and ``experiment_id``, use an experiment
            named after the study (created when missing); otherwise MLflow's active one.
        mlflow_kwargs: ``experiment_id``; ``run_name`` (of the parent run started here);
            ``tags`` (added to every trial run). ``nested`` is accepted and ignored: trial
            runs are always nested.
        tag_study_user_attrs: Add the study's user attrs to every trial run's tags.
        tag_trial_user_attrs: Add each trial's user attrs to its run's tags.
        parent_run_id: Run to nest the trial runs under. None uses the MLflow Project run
            (``MLFLOW_RUN_ID``, set by ``mlflow run``) or the active run at construction,
            else starts a run named after the study on first use.
        flush_interval: Seconds between writes of buffered :meth:`log_step` metrics while a
            trial runs; everything is written when the trial ends.
        trial_end_hooks: Callables ``(study, frozen_trial, run_id)`` run after a trial's
            data is written and before its run is ended (e.g. to log its model). A hook's
            exception propagates (after the run has been ended).
        legacy_tags: Also write the tags ``optuna_integration`` wrote (``number``,
            ``state``, ``direction``, ``datetime_*``, ``{param}_distribution``).
        heartbeat_interval: Seconds between updates of the parent's
            ``optuna_mlflow.heartbeat`` tag, which the reconciler reads to tell a live
            parent run from one whose process died. A daemon thread refreshes it while
            the callback tracks a study (from first use until :meth:`close`), at least
            every 1.5 intervals, so a live parent keeps beating through silent trials.
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
        parent_run_id: str | None = None,
        flush_interval: float = 5.0,
        trial_end_hooks: Iterable[TrialEndHook] = (),
        legacy_tags: bool = True,
        heartbeat_interval: float = 60.0,
    ) -> None:
        if not isinstance(metric_name, str | Sequence):
            raise TypeError(
                f"metric_name must be a string or a sequence of strings, got {metric_name!r}."
            )
        self._metric_name = metric_name if isinstance(metric_name, str) else list(metric_name)
        self._create_experiment = create_experiment
        self._mlflow_kwargs = dict(mlflow_kwargs or {})
        self._tag_study_user_attrs = tag_study_user_attrs
        self._tag_trial_user_attrs = tag_trial_user_attrs
        self._legacy_tags = legacy_tags
        self.trial_end_hooks: list[TrialEndHook] = list(trial_end_hooks)
        self.client = MlflowClient(tracking_uri)
        # Captured now: MLflow's fluent end_run() deletes MLFLOW_RUN_ID from the environment.
        active = mlflow.active_run()
        self._given_parent = (
            parent_run_id
            or os.environ.get("MLFLOW_RUN_ID")
            or (active.info.run_id if active is not None else None)
        )
        self._lock = threading.RLock()
        # By study uid: two studies of one name are two sessions.
        self._sessions: dict[str, StudySession] = {}
        self._closed: list[StudySession] = []
        self._live = LiveTrialRuns(self.client, self._lock, flush_interval, heartbeat_interval)
        self._heartbeat = ParentHeartbeat(self._beat_open_parents, heartbeat_interval)
        self._fluent = FluentTrialRuns(self._live, self._session, tracking_uri)

    # -- where runs go --------------------------------------------------------------------

    def start(self, study: optuna.Study) -> str:
        """Resolve the experiment and the parent run of ``study`` now instead of lazily.

        Args:
            study: The study to track.

        Returns:
            The parent run id.
        """
        return self._session(study).parent_run_id

    def session(self, study: optuna.Study) -> StudySession:
        """The experiment, parent run and trial writer of ``study`` (started if needed).

        Args:
            study: The study to track.

        Returns:
            The study's session.
        """
        return self._session(study)

    @property
    def parent_run_id(self) -> str | None:
        """Parent run of the (first) tracked study, or the given one; None before start."""
        with self._lock:
            for session in [*self._sessions.values(), *self._closed]:
                return session.parent_run_id
        return self._given_parent

    @property
    def experiment_id(self) -> str | None:
        """Experiment of the (first) tracked study; None before start."""
        with self._lock:
            for session in [*self._sessions.values(), *self._closed]:
                return session.writer.experiment_id
        return None

    def run_id_for(
        self, trial_number: int, study_name: str | None = None, *, study_uid: str | None = None
    ) -> str | None:
        """The run of a trial this callback tracked.

        Args:
            trial_number: Trial number.
            study_name: The trial's study; needed only when tracking several studies.
            study_uid: The trial's study uid (:func:`ensure_study_uid`); tells apart
                several studies of one name.

        Returns:
            The run id, or None if this callback has no run for that trial.
        """
        return self._live.run_id_for(trial_number, study_name, study_uid)

    # -- the Optuna callback --------------------------------------------------------------

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Write the finished trial into its run, run the hooks, end the run.

        Args:
            study: The study.
            trial: The finished trial.
        """
        session = self._session(study)
        live = self._live.write(session, trial)
        try:
            for hook in self.trial_end_hooks:
                hook(study, trial, live.run_id)
        finally:
            self._live.end(live, trial)

    def log_step(self, trial: optuna.Trial, step: int, metrics: Mapping[str, float]) -> None:
        """Log per-step metrics of a running trial (e.g. ``train_loss`` per epoch).

        The trial's run is created at the first call, so a live trial shows up in the UI.
        Metrics are buffered and written at most every ``flush_interval`` seconds, and
        completely when the trial ends.

        Args:
            trial: The running trial.
            step: The step (epoch) the values belong to.
            metrics: Metric name -> value.
        """
        session = self._session(trial.study)
        live = self._live.open(session, trial.number, trial._trial_id)
        self._live.log(live, step, metrics)

    def flush(self) -> None:
        """Write every buffered :meth:`log_step` metric now."""
        self._live.flush_all()

    def track_in_mlflow(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: inside the objective, ``mlflow.log_*`` calls log into the trial's run.

        Returns:
            A decorator for objective functions.
        """
        return self._fluent.decorator()

    # -- study-level helpers --------------------------------------------------------------

    def reconcile(
        self,
        study: optuna.Study,
        *,
        stale_after: float | None = 600.0,
        all_other_parents_stale: bool = False,
        fill_missing: bool = True,
    ) -> ReconcileReport:
        """Repair runs a killed process left behind (see :func:`reconcile_study`).

        Call it once before optimizing, from the process that launches the workers.

        Args:
            study: The study.
            stale_after: Seconds without a heartbeat after which another RUNNING parent
                run of the study counts as dead.
            all_other_parents_stale: Treat every other RUNNING parent as dead.
            fill_missing: Write runs for finished trials that have none.

        Returns:
            What was changed.
        """
        return reconcile_study(
            study,
            self._session(study).writer,
            stale_after=stale_after,
            all_other_parents_stale=all_other_parents_stale,
            fill_missing=fill_missing,
        )

    def log_study_artifacts(
        self, study: optuna.Study, metric_name: str | Sequence[str] | None = None
    ) -> dict[str, str]:
        """Log plots, ``trials.csv``, ``best_params.json`` and counts on the parent run.

        Args:
            study: The study.
            metric_name: Objective metric name(s); defaults to the callback's.

        Returns:
            Plot name -> why it was skipped.
        """
        return log_study_artifacts(
            study,
            self.start(study),
            client=self.client,
            metric_name=self._metric_name if metric_name is None else metric_name,
        )

    def log_dataset(self, study: optuna.Study, name: str, **kwargs: Any) -> None:
        """Log a dataset input on the study's parent run (see :func:`log_dataset`).

        Args:
            study: The study.
            name: Dataset name.
            **kwargs: Passed to :func:`optuna_mlflow.log_dataset`.
        """
        log_dataset(self.start(study), name, client=self.client, **kwargs)

    # -- ending ---------------------------------------------------------------------------

    def close(self, status: str = "FINISHED", *, end_parent: bool | None = None) -> None:
        """Flush everything and leave no run of this callback RUNNING.

        Trial runs still open (the objective raised, the user interrupted) are rewritten
        from Optuna's storage: a FAIL trial ends FAILED; a trial still RUNNING there ends
        FAILED with tag ``optuna_mlflow.end_reason``. Every parent run this callback
        started is ended with ``status``, whatever ``end_parent`` says.

        Args:
            status: Terminal status of the parent run (FINISHED, FAILED or KILLED).
            end_parent: True also ends, when still RUNNING, a parent run given to the
                callback (e.g. the MLflow Project run, which MLflow otherwise ends itself,
                unless the ``mlflow run`` process died), even when no trial was tracked
                under it yet. None and False leave a given parent alone.
        """
        # First, so that no beat lands on a parent run after it has ended.
        self._heartbeat.stop()
        errors = self._live.close_open()
        with self._lock:
            sessions = list(self._sessions.values())
            owned = [s.parent_run_id for s in sessions if s.owns_parent]
            given = [s.parent_run_id for s in sessions if not s.owns_parent]
            # A parent given to us may be ended by a later, explicit close(end_parent=True).
            given += [s.parent_run_id for s in self._closed if not s.owns_parent]
            if self._given_parent is not None:
                given.append(self._given_parent)
        ends = [(run_id, False) for run_id in owned]
        if end_parent:
            ends += [(run_id, True) for run_id in dict.fromkeys(given)]
        for run_id, only_running in ends:
            try:
                if only_running and self.client.get_run(run_id).info.status != "RUNNING":
                    continue  # ended already (by MLflow, or an earlier close)
                self.client.set_terminated(run_id, status=status)
            except Exception as exc:  # keep ending the others
                errors.append(exc)
        with self._lock:
            # Closed sessions still answer parent_run_id/experiment_id; a later use of the
            # callback starts a new parent run.
            self._closed.extend(sessions)
            self._sessions.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> MLflowCallback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("KILLED")
        else:
            self.close("FAILED")

    # -- internals ------------------------------------------------------------------------

    def _session(self, study: optuna.Study) -> StudySession:
        with self._lock:
            # The same Study object: no storage read (log_step calls this every epoch).
            for open_session in self._sessions.values():
                if open_session.study is study:
                    return open_session
            uid = ensure_study_uid(study)
            session = self._sessions.get(uid)
            if session is None:
                session = StudySession.open(
                    self.client,
                    study,
                    metric_name=self._metric_name,
                    parent_run_id=self._given_parent,
                    create_experiment=self._create_experiment,
                    mlflow_kwargs=self._mlflow_kwargs,
                    context_tags=context_tags(),
                    tag_study_user_attrs=self._tag_study_user_attrs,
                    tag_trial_user_attrs=self._tag_trial_user_attrs,
                    legacy_tags=self._legacy_tags,
                )
                session.last_heartbeat = time.time()
                self._sessions[uid] = session
                self._heartbeat.start()
            return session

    def _beat_open_parents(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        self._live.heartbeat(sessions)
