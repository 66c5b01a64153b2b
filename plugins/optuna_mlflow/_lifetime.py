"""What one callback holds open, and how all of it is ended, whatever the user forgets.

:class:`Tracked` never refers to the callback, so the callback's ``weakref.finalize`` can end
everything when the callback is collected or, at the latest, at interpreter exit.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from mlflow import MlflowClient

from optuna_mlflow._live import LiveTrialRuns
from optuna_mlflow._session import StudySession

_logger = logging.getLogger(__name__)
# Waking at half the interval bounds the gap between beats by 1.5 intervals; the floor keeps
# a zero interval (a beat on every flush, as tests use) from a busy loop of writes.
MIN_PERIOD_S = 0.5


class ParentHeartbeat:
    """Calls ``beat`` from a daemon thread about every ``interval / 2`` seconds.

    A trial may write nothing to MLflow for longer than another process's reconcile waits
    (one long epoch); beating from a thread keeps its live parent run from being ended.

    Args:
        beat: Refreshes the due heartbeat tags; its errors are logged (debug) and retried.
        interval: The heartbeat interval in seconds.
    """

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat = beat
        self._period = max(interval / 2, MIN_PERIOD_S)
        # Guards _thread and _stop: a start() racing a stop() never leaves a stray thread.
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        with self._guard:
            return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it is running."""
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="optuna-mlflow-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for a beat in progress to end."""
        with self._guard:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._period):
            try:
                self._beat()
            except Exception:
                _logger.debug("parent heartbeat failed", exc_info=True)


class Tracked:
    """The sessions, open trial runs and parent heartbeat of one callback.

    Args:
        client: Client of the tracking store.
        live: The callback's trial runs (its lock guards the sessions too).
        given_parent: A parent run given to the callback, ended only by
            ``close(end_parent=True)``.
        heartbeat_interval: Seconds between heartbeat tags on the parent runs.
    """

    def __init__(
        self,
        client: MlflowClient,
        live: LiveTrialRuns,
        given_parent: str | None,
        heartbeat_interval: float,
    ) -> None:
        self.client = client
        self.live = live
        self.lock = live.lock
        self.given_parent = given_parent
        self.sessions: dict[str, StudySession] = {}  # by uid: one name may be two studies
        self.closed: list[StudySession] = []
        self.heartbeat = ParentHeartbeat(self._beat, heartbeat_interval)

    def add(self, uid: str, session: StudySession) -> None:
        """Track a new session; a parent run gets its heartbeat thread (lock held)."""
        self.sessions[uid] = session
        if session.parent_run_id is not None:
            self.heartbeat.start()

    def first_session(self) -> StudySession | None:
        """The first session tracked, open or closed."""
        with self.lock:
            return next(iter([*self.sessions.values(), *self.closed]), None)

    def _beat(self) -> None:
        with self.lock:
            sessions = list(self.sessions.values())
        self.live.heartbeat(sessions)

    def close(self, status: str, end_parent: bool | None) -> None:
        """End every run of the callback; see ``MLflowCallback.close``."""
        self.heartbeat.stop()  # first: no beat may land on an ended parent
        errors = self.live.close_open()
        with self.lock:
            sessions = list(self.sessions.values())
            owned = [s.parent_run_id for s in sessions if s.owns_parent]
            # A given parent may be ended by a later, explicit close(end_parent=True).
            given = [s.parent_run_id for s in [*sessions, *self.closed] if not s.owns_parent]
            given.append(self.given_parent)
        ends = [(run_id, False) for run_id in owned if run_id is not None]
        if end_parent:
            ends += [(run_id, True) for run_id in dict.fromkeys(given) if run_id is not None]
        for run_id, only_running in ends:
            try:
                if only_running and self.client.get_run(run_id).info.status != "RUNNING":
                    continue  # ended already (by MLflow, or an earlier close)
                self.client.set_terminated(run_id, status=status)
            except Exception as exc:  # keep ending the others
                errors.append(exc)
        with self.lock:
            # Closed sessions still answer parent_run_id/experiment_id; a later use of the
            # callback starts a new parent run.
            self.closed.extend(sessions)
            self.sessions.clear()
        if errors:
            raise errors[0]

    def close_at_exit(self) -> None:
        """Close without raising: the callback was collected or the interpreter exits."""
        # Set when the interpreter printed an uncaught exception, before atexit runs.
        error = getattr(sys, "last_value", None)
        status = "FINISHED" if error is None else "FAILED"
        if isinstance(error, KeyboardInterrupt):
            status = "KILLED"
        try:
            self.close(status, end_parent=False)
        except Exception:
            _logger.warning("optuna_mlflow: could not end every run at exit", exc_info=True)
