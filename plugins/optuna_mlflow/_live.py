"""Bookkeeping of the trial runs a live process has open: buffers, flushes, endings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.entities import Metric
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._entities import log_batch_chunked, now_ms
from optuna_mlflow._session import StudySession

PROCESS_STOPPED = (
    "the process stopped before the trial finished (still RUNNING in Optuna's storage)"
)


@dataclass
class LiveRun:
    """One trial run opened by this process.

    Attributes:
        run_id: The MLflow run.
        number: The trial's number (to re-read it on close).
        session: The study's session.
        buffer: Logged metrics not sent yet.
        logged: Steps logged per metric key (intermediate values there are not resent).
        last_flush: ``time.monotonic()`` of the last send.
        fail_reason: The exception that ended the objective, if any.
        done: The run has been ended.
    """

    run_id: str
    number: int
    session: StudySession
    buffer: list[Metric] = field(default_factory=list)
    logged: dict[str, set[int]] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)
    fail_reason: str | None = None
    done: bool = False


class LiveTrialRuns:
    """The trial runs of one callback, keyed by (study uid, trial number).

    Every method takes ``lock`` around its MLflow calls, which also keeps threads from
    writing one SQLite store at once; only the heartbeat thread's tag write goes without it.

    Args:
        client: Client of the tracking store.
        lock: The callback's lock (re-entrant).
        flush_interval: Minimum seconds between sends of a trial's buffered metrics.
        heartbeat_interval: Minimum seconds between heartbeat tags on a parent run.
    """

    def __init__(
        self,
        client: MlflowClient,
        lock: threading.RLock,
        flush_interval: float,
        heartbeat_interval: float,
    ) -> None:
        self.client = client
        self.lock = lock
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        # By uid, not name: one callback may track two studies of the same name in turn.
        self._runs: dict[tuple[str, int], LiveRun] = {}

    def owns(self, run_id: str) -> bool:
        """Whether ``run_id`` is a trial run this process opened and has not ended."""
        with self.lock:
            return any(live.run_id == run_id and not live.done for live in self._runs.values())

    def run_id_for(
        self, number: int, study_name: str | None = None, study_uid: str | None = None
    ) -> str | None:
        """Run id of trial ``number`` (of the study named/with the uid given, or any)."""
        with self.lock:
            for (uid, num), live in self._runs.items():
                name = live.session.writer.study_name
                if num == number and study_uid in (None, uid) and study_name in (None, name):
                    return live.run_id
        return None

    def open(
        self, session: StudySession, number: int, parent: Callable[[], Mapping[str, str]] = dict
    ) -> LiveRun:
        """The trial's run, created on first use (RUNNING; ``parent()`` tags its parent)."""
        with self.lock:
            live = self._runs.get((session.study_uid, number))
            if live is None:
                run_id = session.writer.create_run(number, tags=parent())
                live = self._runs[(session.study_uid, number)] = LiveRun(run_id, number, session)
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
        """Send a trial's buffered metrics now."""
        with self.lock:
            if live.buffer:
                pending, live.buffer = live.buffer, []
                log_batch_chunked(self.client, live.run_id, metrics=pending)
            live.last_flush = time.monotonic()
            self.heartbeat([live.session])

    def flush_all(self) -> None:
        """Send every trial's buffered metrics now."""
        with self.lock:
            for live in self._runs.values():
                if live.buffer:
                    self.flush(live)

    def write(
        self, session: StudySession, trial: FrozenTrial, parent: Mapping[str, str]
    ) -> LiveRun:
        """Write a finished trial and its buffer into its run (created if none); no end."""
        with self.lock:
            live = self._runs.get((session.study_uid, trial.number))
            if live is None:
                run_id = session.writer.write(
                    trial, search=False, terminate=False, extra_tags=parent
                )
                live = LiveRun(run_id, trial.number, session)
                self._runs[(session.study_uid, trial.number)] = live
            else:
                self._write(live, trial, terminate=False)
            self.heartbeat([session])
            return live

    def end(self, live: LiveRun, trial: FrozenTrial) -> None:
        """End the run with the status of the trial's state."""
        with self.lock:
            live.session.writer.terminate(live.run_id, trial)
            self._forget(live)

    def reopen(self, live: LiveRun, *, quiet: bool = False) -> None:
        """Mark a run RUNNING again after ``mlflow.start_run`` ended it (``quiet``: no raise)."""
        try:
            with self.lock:
                self.client.update_run(live.run_id, status="RUNNING")
        except Exception:
            if not quiet:
                raise

    def close_open(self) -> list[BaseException]:
        """Rewrite every still-open run from Optuna's storage and end it; return the errors met."""
        errors: list[BaseException] = []
        with self.lock:
            open_runs = [live for live in self._runs.values() if not live.done]
        for live in open_runs:
            try:
                with self.lock:
                    trials = live.session.study.get_trials(deepcopy=False)
                    trial = next(t for t in trials if t.number == live.number)
                    if trial.state.is_finished():
                        self._write(live, trial, terminate=True)
                    else:
                        tags = {k.END_REASON: PROCESS_STOPPED}
                        self._write(live, trial, terminate=True, status="FAILED", tags=tags)
                    self._forget(live)
            except Exception as exc:  # keep closing the others
                errors.append(exc)
        return errors

    def heartbeat(self, sessions: Iterable[StudySession]) -> None:
        """Refresh the parent heartbeat tag of the due ``sessions`` (writes not under the lock)."""
        now = time.time()
        with self.lock:
            due = [s for s in sessions if now - s.last_heartbeat >= self.heartbeat_interval]
        for session in due:
            if session.parent_run_id is None:
                continue
            self.client.set_tag(session.parent_run_id, k.HEARTBEAT, str(int(now)), synchronous=True)
            # Only a written beat counts: after a failed write the next wake-up tries again.
            with self.lock:
                session.last_heartbeat = max(session.last_heartbeat, now)

    def _write(
        self,
        live: LiveRun,
        trial: FrozenTrial,
        *,
        terminate: bool,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        pending, live.buffer = live.buffer, []
        live.session.writer.write(
            trial,
            run_id=live.run_id,
            search=False,
            terminate=terminate,
            status=status,
            extra_metrics=pending,
            skip_steps=live.logged,
            fail_reason=live.fail_reason,
            extra_tags=tags,
        )

    def _forget(self, live: LiveRun) -> None:
        live.done = True
        live.buffer = []
        live.logged = {}
