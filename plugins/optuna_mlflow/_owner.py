"""Which process wrote a run, and whether that process is gone (on this host).

A RUNNING parent run whose process died stays RUNNING in MLflow until someone ends it. The
heartbeat rule (no beat for ``stale_after`` seconds) works across machines but has to wait;
on the machine that ran the process, the process table answers at once. The owner is
``host:pid:start:pidns`` where ``start`` is the process start time in clock ticks since boot
(field 22 of ``/proc/<pid>/stat``), so a pid reused by another process is told apart, and
``pidns`` the inode of its pid namespace: containers sharing the host's name (host
networking) do not see each other's pids, so only an owner of our own namespace is checked.
Where ``/proc`` is missing (macOS, Windows) it is ``host:pid``.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

__all__ = ["Owner", "owner_is_gone", "parse_owner", "process_owner"]


@dataclass(frozen=True)
class Owner:
    """A parsed owner tag.

    Attributes:
        host: ``socket.gethostname()`` of the process.
        pid: Its process id.
        start: Its start time in clock ticks since boot; None where unknown.
        pidns: Inode of its pid namespace; None where unknown.
    """

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


def _start_ticks(pid: int) -> str | None:
    fields = _stat_fields(pid)
    # After the command name: field 3 is fields[0], so field 22 is fields[19].
    return fields[19] if fields is not None and len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return link.partition("[")[2].rstrip("]") or None


@functools.cache
def _owner_of(pid: int) -> str:
    start, pidns = _start_ticks(pid), _pid_namespace()
    host = socket.gethostname()
    if start is None:
        return f"{host}:{pid}"
    return f"{host}:{pid}:{start}:{pidns}" if pidns else f"{host}:{pid}:{start}"


def process_owner() -> str:
    """The owner tag of the calling process.

    Returns:
        ``host:pid:start:pidns`` (Linux) or ``host:pid``.
    """
    # Keyed by pid: a forked child is another owner.
    return _owner_of(os.getpid())


def parse_owner(tag: str) -> Owner | None:
    """Read an owner tag back.

    Args:
        tag: The tag's value.

    Returns:
        The owner, or None when the tag is not in either form.
    """
    host, sep, rest = tag.partition(":")
    if not sep or not host:
        return None
    pid_text, _, rest = rest.partition(":")
    start, _, pidns = rest.partition(":")
    if not pid_text.isdigit():
        return None
    return Owner(host, int(pid_text), start or None, pidns or None)


def owner_is_gone(tag: str | None) -> bool:
    """Whether the process named by an owner tag is known to be gone.

    Only a process of this host (and of our pid namespace, when the tag names one) can be
    checked; for any other, an unreadable tag or no tag the answer is False (unknown), and
    the heartbeat rule decides.

    Args:
        tag: The run's ``optuna_mlflow.owner`` tag.

    Returns:
        True when the owner ran on this host and its pid no longer exists, is a zombie, or
        now belongs to a process started at another time.
    """
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
