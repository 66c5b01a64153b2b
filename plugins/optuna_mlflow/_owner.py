"""Which process wrote a run, and whether that process is gone (on this host).

The owner tag is ``host:pid:start:pidns``: ``start`` is the process start time in clock ticks
(field 22 of ``/proc/<pid>/stat``, so a reused pid is told apart) and ``pidns`` the inode of
its pid namespace (containers sharing a host name do not see each other's pids). Without
``/proc`` (macOS, Windows) it is ``host:pid``.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass


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


def _pid_namespace() -> str | None:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return link.partition("[")[2].rstrip("]") or None


@functools.cache
def _owner_of(pid: int) -> str:
    fields = _stat_fields(pid)
    # Field 22 is fields[19]: the list starts at field 3.
    start = fields[19] if fields is not None and len(fields) > 19 else None
    pidns, host = _pid_namespace(), socket.gethostname()
    if start is None:
        return f"{host}:{pid}"
    return f"{host}:{pid}:{start}:{pidns}" if pidns else f"{host}:{pid}:{start}"


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
    """Whether the process an owner tag names is known to be gone.

    Only a process of this host (and pid namespace) can be checked; otherwise the answer is
    False (unknown), and the heartbeat rule decides.

    Args:
        tag: The run's ``optuna_mlflow.owner`` tag.

    Returns:
        True when it ran here and its pid is gone, a zombie, or another process now.
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
