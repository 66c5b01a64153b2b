"""Subprocess helpers for the multi-process tests: agehpo and MLflow commands, servers,
bounded waits.

Every process is started in its own session, so it and its children can be stopped as a
group; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]

# Small, fast studies: a few seconds per trial on one CPU core.
SMALL = ("--n-samples", "600", "--img-size", "12", "--n-epochs", "2")
COMMON = ("--device", "cpu", "--sampler", "random", "--pruner", "none")
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def agehpo_env(tmp_path: Path, tracking_uri: str, **extra: str) -> dict[str, str]:
    """Environment of an agehpo subprocess: its stores, short heartbeats, one thread."""
    env = dict(os.environ)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "AGEHPO_CACHE_DIR": str(tmp_path / "cache"),
            "AGEHPO_HEARTBEAT_INTERVAL": "1",
            "AGEHPO_HEARTBEAT_GRACE": "3",
            # Two shared cores: one torch thread per process.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def agehpo_command(subcommand: str, *args: str) -> list[str]:
    """``python -m agehpo <subcommand> <args>`` with this interpreter."""
    return [sys.executable, "-m", "agehpo", subcommand, *args]


def mlflow_server_command(backend: str, artifacts: Path, port: int) -> list[str]:
    """``mlflow server`` on ``127.0.0.1:port``, one worker, proxying artifacts to ``artifacts``."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def mlflow_run(
    tracking_uri: str,
    cwd: Path,
    *params: str,
    entry_point: str | None = None,
    timeout: float = 540,
) -> subprocess.CompletedProcess[str]:
    """``mlflow run <repo> --env-manager local [-e entry_point] -P ...`` as a user runs it,
    stores in ``cwd``."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "AGEHPO_CACHE_DIR": str(cwd / "cache"),
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local"]
    if entry_point is not None:
        command += ["-e", entry_point]
    for param in params:
        command += ["-P", param]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


class Proc:
    """A started process with its combined output in a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self, n: int = 4000) -> str:
        """The last ``n`` characters of the process's output."""
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        """Wait at most ``timeout`` seconds; fail (after killing it) when it runs longer."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self)
            raise AssertionError(
                f"{self.popen.args!r} still ran after {timeout:.0f} s:\n{self.output()}"
            ) from None


def start(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> Proc:
    """Start ``command`` in a new session, stdout and stderr into ``log``."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(popen, log)


def kill_group(proc: Proc) -> None:
    """SIGKILL the process group we started (the process and its children), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(30)


def stop(proc: Proc, grace: float = 20.0) -> None:
    """SIGTERM the process group; SIGKILL it when it has not exited after ``grace`` s."""
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(grace)
    # Children of an exited leader may still live in its group.
    kill_group(proc)


@contextlib.contextmanager
def running(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[Proc]:
    """Start a process and stop it (group and all) when the block ends."""
    proc = start(command, env=env, cwd=cwd, log=log)
    try:
        yield proc
    finally:
        stop(proc)


def run(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, timeout: float
) -> tuple[int, str]:
    """Run a command to its end (bounded); returns its exit status and whole output."""
    proc = start(command, env=env, cwd=cwd, log=log)
    try:
        code = proc.wait(timeout)
    finally:
        stop(proc)
    return code, proc.log.read_text(errors="replace")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    alive: Proc | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail at the deadline, or early when
    ``alive`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if alive is not None and alive.popen.poll() is not None:
            raise AssertionError(
                f"process exited with {alive.popen.returncode} before {what}:\n{alive.output()}"
            )
        if time.monotonic() > deadline:
            extra = f"\n{alive.output()}" if alive is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def wait_http(url: str, proc: Proc, *, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` exits."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    wait_for(probe, timeout=timeout, what=f"{url} to answer", alive=proc)
