"""Which process wrote a run, whether it is gone, its heartbeat. Owner tag: ``host:pid:start:pidns``
(start in clock ticks against pid reuse; pid namespace for containers), else ``host:pid``."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

_logger = logging.getLogger(__name__)
# Waking at half the interval bounds gaps by 1.5 intervals; the floor avoids a busy loop.
MIN_PERIOD_S = 0.5


@dataclass(frozen=True)
class Owner:
    """A parsed owner tag; ``start`` and ``pidns`` None where unknown."""

    host: str
    pid: int
    start: str | None
    pidns: str | None = None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from field 3 (state) on; None without that file."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # Field 2 (the command name, in parentheses) may itself hold spaces and parentheses.
    return text.rpartition(")")[2].split()


def _pid_namespace() -> str | None:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return link.partition("[")[2].rstrip("]") or None


@functools.cache
def _owner_of(pid: int) -> str:
    # The start time, field 22, is fields[19]: the list starts at field 3.
    parts = [socket.gethostname(), str(pid), *(_stat_fields(pid) or [])[19:20]]
    if len(parts) == 3 and (pidns := _pid_namespace()):  # a pid namespace only with a start
        parts.append(pidns)
    return ":".join(parts)


def process_owner() -> str:
    """The owner tag of the calling process: ``host:pid:start:pidns`` or ``host:pid``."""
    return _owner_of(os.getpid())  # keyed by pid: a forked child is another owner


def parse_owner(tag: str) -> Owner | None:
    """Read an owner tag back; None when it is in neither form."""
    host, sep, rest = tag.partition(":")
    pid_text, _, rest = rest.partition(":")
    start, _, pidns = rest.partition(":")
    if not sep or not host or not pid_text.isdigit():
        return None
    return Owner(host, int(pid_text), start or None, pidns or None)


def owner_is_gone(tag: str | None) -> bool:
    """Whether the tag's process on this host and pid namespace is gone, a zombie or its pid
    reused; False elsewhere (the heartbeat decides)."""
    owner = parse_owner(tag) if tag else None
    if owner is None or owner.host != socket.gethostname():
        return False
    if owner.pidns is not None and owner.pidns != _pid_namespace():
        return False  # another container on this host: its pids are not ours to see
    fields = _stat_fields(owner.pid)
    if fields is not None:
        # A zombie (killed, not yet reaped by its parent) does not write anymore.
        return fields[0] == "Z" or (owner.start is not None and fields[19:20] != [owner.start])
    if os.path.isdir("/proc/self"):
        return True  # /proc works here and has no entry for that pid
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


class ParentHeartbeat:
    """Calls ``beat`` from a daemon thread every ``interval / 2`` s, so a long silent epoch
    does not get a live parent run ended by another process's reconcile."""

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat, self._period = beat, max(interval / 2, MIN_PERIOD_S)
        # Guards _thread and _stop: a start() racing a stop() leaves no stray thread.
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._guard:
            return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="optuna-mlflow-heartbeat",
                    daemon=True,
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
            except Exception:  # retried at the next wake-up
                _logger.debug("parent heartbeat failed", exc_info=True)
