"""``MLflowCallback.track_in_mlflow``: MLflow's fluent API logs into the running trial's run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
import optuna

from optuna_mlflow._live import LiveTrialRuns
from optuna_mlflow._session import StudySession


class FluentTrialRuns:
    """Resumes each trial's run with ``mlflow.start_run`` around the objective.

    Args:
        live: The callback's open trial runs (their lock guards the fluent globals too).
        session_of: The callback's session lookup (creates the parent run on first use).
        parent_tags: The callback's rule for the parent of a new trial run (may raise).
        tracking_uri: The callback's store; None leaves MLflow's fluent URI alone.
    """

    def __init__(
        self,
        live: LiveTrialRuns,
        session_of: Callable[[optuna.Study], StudySession],
        parent_tags: Callable[[], Mapping[str, str]],
        tracking_uri: str | None,
    ) -> None:
        self._live = live
        self._session_of = session_of
        self._parent_tags = parent_tags
        self._tracking_uri = tracking_uri
        self._experiment_id: str | None = None

    def decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap an objective function; see ``MLflowCallback.track_in_mlflow``."""

        @functools.wraps(func)
        def wrapper(trial: optuna.Trial) -> Any:
            session = self._session_of(trial.study)
            live = self._live.open(session, trial.number, self._parent_tags)
            with self._live.lock:
                self._point_at(session)
            try:
                # MLflow 3's active-run stack is thread-local: each n_jobs thread resumes
                # only its own trial's run.
                with mlflow.start_run(run_id=live.run_id, nested=True):
                    result = func(trial)
            except BaseException as exc:
                if not isinstance(exc, optuna.TrialPruned):
                    # Optuna 5 keeps no fail reason; the callback or close() logs it.
                    live.fail_reason = f"{type(exc).__name__}: {exc}"
                self._live.reopen(live, quiet=True)
                raise
            self._live.reopen(live)
            return result

        return wrapper

    def _point_at(self, session: StudySession) -> None:
        # start_run(run_id=...) refuses a run outside the active experiment, and
        # optuna_integration set both globally too (lock held).
        if self._tracking_uri is not None:
            mlflow.set_tracking_uri(self._tracking_uri)
        if self._experiment_id != session.writer.experiment_id:
            mlflow.set_experiment(experiment_id=session.writer.experiment_id)
            self._experiment_id = session.writer.experiment_id
