"""A background thread that keeps the tracked parent runs' heartbeat tags fresh."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["ParentHeartbeat"]

_logger = logging.getLogger(__name__)
# Waking at half the interval bounds the gap between two beats by 1.5 intervals while the
# beat itself still writes at most once per interval. The floor keeps a zero interval (a
# beat on every flush, as tests use) from turning the thread into a busy loop of writes.
MIN_PERIOD_S = 0.5


class ParentHeartbeat:
    """Calls ``beat`` from a daemon thread, about every ``interval / 2`` seconds.

    A trial can run for longer than another process's reconcile waits (``stale_after``)
    without writing anything to MLflow: no :meth:`MLflowCallback.log_step`, or one long
    epoch. Beating from a thread, not only when metrics are flushed, keeps such a live
    parent run from being ended KILLED as if its process had died.

    Args:
        beat: Refreshes the heartbeat tags that are due; its errors are logged (debug) and
            the next beat tries again, since a missed beat only risks a later reconcile.
        interval: The heartbeat interval in seconds.
    """

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat = beat
        self._period = max(interval / 2, MIN_PERIOD_S)
        # Guards _thread and _stop, so a start() racing a stop() never leaves a thread that
        # nobody stops, nor a stopped one that start() takes for running.
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
