"""One orderly stop per process: the first SIGINT or SIGTERM (or a dead supervisor) starts
it, later ones hurry it. A signal only sets :attr:`OrderlyStop.requested`, never raising into
a storage write; a watchdog exits the process when the cleanup overruns its deadline."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

DEADLINE_S = 8.0  # from the first signal until the process exits, finished or not


class Terminated(KeyboardInterrupt):
    """The run was stopped by SIGTERM (or its supervisor died); trials end FAIL."""


class OrderlyStop:
    """The process's stop request, its exit code and its deadline: ``deadline_s`` the stop may
    take before ``hard_exit`` ends the process, ``hurry_s`` left after a second signal."""

    def __init__(
        self,
        *,
        deadline_s: float = DEADLINE_S,
        hurry_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        hard_exit: Callable[[int], object] = os._exit,
        err: TextIO | None = None,
    ) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self.reason, self.supervisor_died = "", False
        self.watchdog: threading.Thread | None = None
        self._deadline_s, self._hurry_s, self._clock = deadline_s, hurry_s, clock
        self._hard_exit, self._err = hard_exit, err
        self._deadline, self._done, self._changed = float("inf"), False, threading.Condition()

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM); 0 before any."""
        return 128 + self.signum if self.signum is not None else 0

    def request(self, signum: int, reason: str = "") -> None:
        """Start the stop, or hurry it once started; ``signum`` decides the exit code."""
        with self._changed:
            if self.signum is None:
                self.signum = signum
                self.reason = reason or signal.Signals(signum).name
                self._deadline = self._clock() + self._deadline_s
                self.requested.set()
                self.watchdog = threading.Thread(target=self._watch, name="stop", daemon=True)
                self.watchdog.start()
            else:
                self._deadline = min(self._deadline, self._clock() + self._hurry_s)
            self._changed.notify_all()

    def exception(self) -> KeyboardInterrupt:
        """The exception that ends the interrupted work: Terminated but for SIGINT."""
        return (KeyboardInterrupt if self.signum == signal.SIGINT else Terminated)(self.reason)

    def check(self) -> None:
        """Raise :meth:`exception` once a stop was requested."""
        if self.requested.is_set():
            raise self.exception()

    def done(self) -> None:
        """The cleanup finished: the deadline no longer applies."""
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def _watch(self) -> None:
        with self._changed:
            while not self._done and (left := self._deadline - self._clock()) > 0:
                self._changed.wait(left)
            if self._done:
                return
        print(
            f"agehpo: the stop ({self.reason}) did not finish within its deadline; exiting. "
            "Trials left RUNNING are failed and retried by the next run.",
            file=self._err or sys.stderr,
            flush=True,
        )
        self._hard_exit(self.exit_code)

    def install(self, *, watch_parent: bool = False) -> dict[int, Any]:
        """Route SIGINT and SIGTERM here (main thread); ``watch_parent``: stop when it dies.
        Returns the handlers replaced, by signal number."""
        previous: dict[int, Any] = {
            sig: signal.signal(sig, lambda signum, _frame: self.request(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        if watch_parent:
            watch_supervisor(self)
        return previous


def watch_supervisor(
    stop: OrderlyStop, *, poll_s: float = 0.5, getppid: Callable[[], int] = os.getppid
) -> threading.Thread:
    """Request ``stop`` as SIGTERM once the parent is gone, polling ``getppid`` (any POSIX),
    in the daemon thread returned."""
    parent = getppid()

    def watch() -> None:
        while not stop.requested.wait(poll_s):
            if getppid() != parent:
                stop.supervisor_died = True
                stop.request(signal.SIGTERM, f"its parent process {parent} died")
                return

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread
