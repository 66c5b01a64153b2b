"""What one callback holds open and how it ends; never refers to the callback, so the
callback's ``weakref.finalize`` can end everything when it is collected or at exit."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._entities import log_batch_chunked, now_ms
from optuna_mlflow._identity import ensure_study_uid
from optuna_mlflow._owner import ParentHeartbeat
from optuna_mlflow._session import StudySession

_logger = logging.getLogger(__name__)
PROCESS_STOPPED = (
    "the process stopped before the trial finished (still RUNNING in Optuna's storage)"
)


@dataclass
class LiveRun:
    """One trial run opened by this process; ``logged`` holds the steps sent per metric key."""

    run_id: str
    number: int
    session: StudySession
    buffer: list[Metric] = field(default_factory=list)
    logged: dict[str, set[int]] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)
    fail_reason: str | None = None
    done: bool = False


@dataclass(eq=False)
class LiveTrialRuns:
    """Sessions (by uid), trial runs and parent heartbeat of one callback; every MLflow call
    but the heartbeat's tag write holds ``lock`` (one SQLite store, one writer at once)."""

    client: MlflowClient
    options: dict[str, Any]  # MLflowCallback's arguments, for StudySession.open
    given_parent: str | None
    flush_interval: float
    heartbeat_interval: float
    lock: threading.RLock = field(default_factory=threading.RLock)
    sessions: dict[str, StudySession] = field(default_factory=dict)  # one name may be two studies
    closed: list[StudySession] = field(default_factory=list)
    runs: dict[tuple[str, int], LiveRun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.heartbeat = ParentHeartbeat(
            lambda: self.beat(self.sessions.values()), self.heartbeat_interval
        )

    def session(self, study: optuna.Study) -> StudySession:
        """The study's session, opened on first use (a parent run gets its heartbeat thread)."""
        with self.lock:
            # The same Study object: no storage read (log_step calls this every epoch).
            for session in self.sessions.values():
                if session.study is study:
                    return session
            uid = ensure_study_uid(study)
            if uid not in self.sessions:
                session = StudySession.open(self.client, study, self.given_parent, self.options)
                self.sessions[uid] = session
                if session.parent_run_id is not None:
                    self.heartbeat.start()
            return self.sessions[uid]

    def first_session(self) -> StudySession | None:
        with self.lock:
            return next(iter([*self.sessions.values(), *self.closed]), None)

    def parent_tags(self) -> dict[str, str]:
        """The parent of a trial run created now, as optuna_integration chose it."""
        if self.options["parent"]:
            return {}  # the session's parent run
        active = mlflow.active_run()  # this thread's, as mlflow.start_run sees it
        if active is None or self.owns(active.info.run_id):
            return {}
        if not self.options["mlflow_kwargs"].get("nested"):
            raise RuntimeError(
                f"Run with UUID {active.info.run_id} is already active. Expected no active "
                "MLflow run when a trial's run starts (mlflow_kwargs has no nested=True), as "
                "in optuna_integration; pass mlflow_kwargs={'nested': True} to nest the trial "
                "runs under it, or end it first with mlflow.end_run()."
            )
        return {k.MLFLOW_PARENT_RUN_ID: active.info.run_id}

    def owns(self, run_id: str) -> bool:
        """Whether ``run_id`` is a trial run this process opened and has not ended."""
        with self.lock:
            return any(live.run_id == run_id and not live.done for live in self.runs.values())

    def run_id_for(self, number: int, study_name: str | None, study_uid: str | None) -> str | None:
        with self.lock:
            for (uid, num), live in self.runs.items():
                name = live.session.writer.study_name
                if num == number and study_uid in (None, uid) and study_name in (None, name):
                    return live.run_id
        return None

    def open(self, study: optuna.Study, number: int) -> LiveRun:
        """The trial's run, created RUNNING on first use."""
        session = self.session(study)
        with self.lock:
            live = self.runs.get((session.study_uid, number))
            if live is None:
                run_id = session.writer.create_run(number, tags=self.parent_tags())
                live = self.runs[(session.study_uid, number)] = LiveRun(run_id, number, session)
            return live

    def log(self, live: LiveRun, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer per-step metrics; send them when ``flush_interval`` has passed."""
        now, stamp = time.monotonic(), now_ms()
        entries = [Metric(k.safe_key(n), float(v), stamp, int(step)) for n, v in metrics.items()]
        with self.lock:
            live.buffer.extend(entries)
            for metric in entries:
                live.logged.setdefault(metric.key, set()).add(metric.step)
            if live.done or now - live.last_flush >= self.flush_interval:
                self.flush(live)

    def flush(self, live: LiveRun) -> None:
        with self.lock:
            if live.buffer:
                pending, live.buffer = live.buffer, []
                log_batch_chunked(self.client, live.run_id, metrics=pending)
            live.last_flush = time.monotonic()
            self.beat([live.session])

    def flush_all(self) -> None:
        with self.lock:
            for live in self.runs.values():
                if live.buffer:
                    self.flush(live)

    def write(self, study: optuna.Study, trial: FrozenTrial) -> LiveRun:
        """Write a finished trial and its buffer into its run (created if none); no end."""
        session, parent = self.session(study), self.parent_tags()
        with self.lock:
            live = self.runs.get((session.study_uid, trial.number))
            if live is None:
                run_id = session.writer.write(
                    trial, search=False, terminate=False, extra_tags=parent
                )
                live = LiveRun(run_id, trial.number, session)
                self.runs[(session.study_uid, trial.number)] = live
            else:
                self._write(live, trial, terminate=False)
            self.beat([session])
            return live

    def end(self, live: LiveRun, trial: FrozenTrial) -> None:
        with self.lock:
            live.session.writer.terminate(live.run_id, trial)
            self._forget(live)

    def beat(self, sessions: Iterable[StudySession]) -> None:
        """Refresh the parent heartbeat tag of the due ``sessions`` (writes not under the lock)."""
        now = time.time()
        with self.lock:
            due = [s for s in sessions if now - s.last_heartbeat >= self.heartbeat_interval]
        for session in due:
            if session.parent_run_id is None:
                continue
            self.client.set_tag(session.parent_run_id, k.HEARTBEAT, str(int(now)), synchronous=True)
            # Only a written beat counts: a failed write is retried at the next wake-up.
            with self.lock:
                session.last_heartbeat = max(session.last_heartbeat, now)

    def close(self, status: str, end_parent: bool | None) -> None:
        """End every run of the callback; see ``MLflowCallback.close``."""
        self.heartbeat.stop()  # first: no beat may land on an ended parent
        errors = self._close_trial_runs()
        with self.lock:
            sessions = list(self.sessions.values())
            owned = [s.parent_run_id for s in sessions if s.owns_parent]
            # A given parent may be ended by a later, explicit close(end_parent=True).
            given = [s.parent_run_id for s in [*sessions, *self.closed] if not s.owns_parent]
        ends = [(run_id, False) for run_id in owned if run_id is not None]
        if end_parent:
            given.append(self.given_parent)
            ends += [(run_id, True) for run_id in dict.fromkeys(given) if run_id is not None]
        for run_id, only_running in ends:
            try:
                if only_running and self.client.get_run(run_id).info.status != "RUNNING":
                    continue  # ended already (by MLflow, or an earlier close)
                self.client.set_terminated(run_id, status=status)
            except Exception as exc:  # keep ending the others
                errors.append(exc)
        with self.lock:
            # Closed sessions still answer parent_run_id; a later use starts a new parent.
            self.closed.extend(sessions)
            self.sessions.clear()
        if errors:
            raise errors[0]

    def close_at_exit(self) -> None:
        """Close without raising: the callback was collected or the interpreter exits."""
        error = getattr(sys, "last_value", None)  # an uncaught exception, set before atexit
        status = "FINISHED" if error is None else "FAILED"
        try:
            self.close("KILLED" if isinstance(error, KeyboardInterrupt) else status, False)
        except Exception:
            _logger.warning("optuna_mlflow: could not end every run at exit", exc_info=True)

    def _close_trial_runs(self) -> list[BaseException]:
        """Rewrite every open trial run from Optuna's storage and end it; return the errors."""
        errors: list[BaseException] = []
        with self.lock:
            open_runs = [live for live in self.runs.values() if not live.done]
        for live in open_runs:
            try:
                with self.lock:
                    trials = live.session.study.get_trials(deepcopy=False)
                    trial = next(t for t in trials if t.number == live.number)
                    finished = trial.state.is_finished()
                    tags = None if finished else {k.END_REASON: PROCESS_STOPPED}
                    self._write(live, trial, status=None if finished else "FAILED", extra_tags=tags)
                    self._forget(live)
            except Exception as exc:  # keep closing the others
                errors.append(exc)
        return errors

    def _write(self, live: LiveRun, trial: FrozenTrial, **kwargs: Any) -> None:
        pending, live.buffer = live.buffer, []
        live.session.writer.write(
            trial,
            run_id=live.run_id,
            search=False,
            extra_metrics=pending,
            skip_steps=live.logged,
            fail_reason=live.fail_reason,
            **kwargs,
        )

    def _forget(self, live: LiveRun) -> None:
        live.done, live.buffer, live.logged = True, [], {}
