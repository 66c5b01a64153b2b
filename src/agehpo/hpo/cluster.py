"""A study's workers as tasks on a Dask cluster (a LocalCluster here, or a running scheduler)
that places them, pins them to GPUs and reruns a dead worker's task; the Optuna storage stays
the source of truth. Each task claims trials until the budget is spent, so a rerun one claims
only what is left, and a dead worker's trial is failed and retried by whoever claims next (see
:mod:`agehpo.hpo.liveness`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agehpo.config import StudyConfig
from agehpo.errors import ConfigError, WorkersFailedError, quote, quote_path
from agehpo.hpo.stopping import DEADLINE_S, OrderlyStop
from agehpo.urls import journal_path

if TYPE_CHECKING:  # Dask, Optuna and tqdm load when a cluster runs: the checks stay fast
    from distributed import Client
    from tqdm.auto import tqdm

    from agehpo.hpo.runner import TrialRunner

LOCAL = "local"
CONNECT_TIMEOUT_S = 10.0
# Stores every machine reaches: an MLflow server, or a database server MLflow writes to.
_SHARED_TRACKING = ("http", "https", "postgresql", "mysql", "mssql")
_STOP_GRACE_S = DEADLINE_S - 3.0  # workers end their trials FAIL within the client's deadline
# (config, parent run id, tracking URI, stop event name) -> the trial numbers the task ran
Task = Callable[[StudyConfig, "str | None", str, str], list[int]]


def is_remote(cluster: str) -> bool:
    """Whether ``cluster`` names a running scheduler rather than a cluster started here."""
    return cluster not in ("", LOCAL)


def check_cluster(config: StudyConfig, tracking_uri: str) -> None:
    """Refuse a ``cluster`` Dask does not take, and, with a running scheduler, an Optuna or
    MLflow store that workers on other machines cannot reach."""
    cluster, shown = config.cluster, f"with cluster={quote(config.cluster)}"
    if not is_remote(cluster):
        return
    if not re.fullmatch(r"(tcp|tls)://[^\s/]+:\d{1,5}", cluster):
        raise ConfigError(
            f"cluster={quote(cluster)} is not accepted; expected '' (in-process), 'local' (a "
            "LocalCluster of n_workers processes here) or a scheduler such as tcp://10.0.0.5:8786"
        )
    journal = journal_path(config.storage)
    if config.storage.startswith("sqlite") or (journal and not journal.is_absolute()):
        what = "SQLite is a file on this machine" if journal is None else "a relative path"
        raise ConfigError(
            f"storage={quote_path(config.storage)} {shown}: {what} other machines cannot share; "
            "use a database server (-P storage=postgresql://user@host/db) or the absolute path "
            "of a journal file on a folder every worker mounts"
        )
    if tracking_uri.partition(":")[0].partition("+")[0] not in _SHARED_TRACKING:
        raise ConfigError(
            f"MLFLOW_TRACKING_URI={quote_path(tracking_uri)} {shown}: workers on other machines "
            "cannot log there; start an mlflow server and export "
            "MLFLOW_TRACKING_URI=http://host:5000 (or use a database server)"
        )


def check_scheduler(cluster: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` unless the Dask scheduler at ``cluster`` answers in time."""
    from distributed import Client

    try:
        with Client(cluster, timeout=timeout_s):
            return
    except OSError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"cluster={quote(cluster)} did not answer within {timeout_s:.0f} s ({reason}); "
            "start a scheduler there (dask scheduler --port 8786) or fix the address"
        ) from None


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else torch's count."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def local_worker_specs(n_workers: int, gpus: list[str]) -> dict[str, dict[str, Any]]:
    """A one-thread Nanny per worker; with GPUs worker ``i`` sees only GPU ``i mod k`` (its
    ``CUDA_VISIBLE_DEVICES``, as dask-cuda's LocalCUDACluster pins) and offers ``GPU=1``."""
    from distributed import Nanny

    specs: dict[str, dict[str, Any]] = {}
    for i in range(n_workers):
        options: dict[str, Any] = {"nthreads": 1, "silence_logs": logging.WARNING}
        if gpus:
            options["env"] = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}
            options["resources"] = {"GPU": 1}
        specs[f"worker-{i}"] = {"cls": Nanny, "options": options}
    return specs


@contextlib.contextmanager
def connect(cluster: str, n_workers: int, gpus: list[str]) -> Iterator[Client]:
    """A client of the scheduler ``cluster``, or of ``n_workers`` started here (closed on exit)."""
    import dask
    from distributed import Client, Scheduler, SpecCluster

    if is_remote(cluster):
        with Client(cluster, timeout=CONNECT_TIMEOUT_S) as client:
            yield client
        return
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    workers = local_worker_specs(n_workers, gpus)
    # Set before a worker process starts (tqdm reads it on import): one progress bar, the client's.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.TQDM_DISABLE": "1"}):
        local = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING)
    with local, Client(local) as client:
        yield client


def worker_seed(seed: int) -> int:
    """A sampler seed of this process: workers seeded alike would all draw the same params."""
    return seed ^ zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())


def watch_stop_event(name: str, stop: OrderlyStop, poll_s: float = 0.5) -> threading.Event:
    """In a task: request ``stop`` (as SIGTERM) once the client sets the Dask event ``name``;
    the watch ends with the stop, or when the task sets the event returned."""
    import signal

    from distributed import Event, get_client

    event, ended = Event(name, client=get_client()), threading.Event()  # the task's client

    def watch() -> None:
        while not stop.requested.is_set() and not ended.is_set():
            with contextlib.suppress(Exception):  # a lost scheduler: the task ends by itself
                if event.wait(poll_s):
                    stop.request(signal.SIGTERM, "the study's client stopped")

    threading.Thread(target=watch, name="stop-event", daemon=True).start()
    return ended


def run_tasks(
    config: StudyConfig,
    runner: TrialRunner,
    task: Task,
    *,
    parent_run_id: str | None,
    tracking_uri: str,
    stop: OrderlyStop,
    progress: tqdm | None = None,
) -> list[int]:
    """Run ``task`` once per worker on ``config.cluster`` (taking ``GPU=1`` with a CUDA device)
    until every task has returned; the trials finished meanwhile. Raises the stop's exception
    after a stop (the workers' trials ended FAIL, retried), or WorkersFailedError when the
    scheduler went away or a task failed."""
    study = runner.study
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    remote = is_remote(config.cluster)
    gpus = visible_gpus() if config.device != "cpu" and not remote else []
    # Remote workers offer GPU=1 when started with --resources GPU=1 (see the README).
    resources = {"GPU": 1} if gpus or (remote and config.device.startswith("cuda")) else None
    with connect(config.cluster, config.n_workers, gpus) as client:
        event_name = f"agehpo-stop-{uuid.uuid4().hex}"
        args = (task, config, parent_run_id, tracking_uri, event_name)
        keys = [f"agehpo-worker-{i}-{event_name[-12:]}" for i in range(config.n_workers)]
        futures = [client.submit(*args, key=key, pure=False, resources=resources) for key in keys]
        where = f"the Dask scheduler at {config.cluster}" if remote else "the local Dask cluster"
        problem = _watch(client, futures, runner, stop, event_name, progress, where)
    with runner.budget_lock.hold():
        runner.fail_dead_trials()  # a worker closed with its cluster: its trial is retried
    stop.check()
    if problem:
        raise WorkersFailedError(problem)
    trials = study.get_trials(deepcopy=False)
    return sorted(t.number for t in trials if t.state.is_finished() and t.number not in before)


def _watch(
    client: Client,
    futures: list[Any],
    runner: TrialRunner,
    stop: OrderlyStop,
    event_name: str,
    progress: tqdm | None,
    where: str,
    poll_s: float = 1.0,
) -> str:
    """Follow the tasks to their end, passing a stop on; a line saying what failed, or ''."""
    from distributed import Event, wait

    seen = sum(t.state.is_finished() for t in runner.study.get_trials(deepcopy=False))
    while not all(future.done() for future in futures):
        if stop.requested.wait(poll_s):
            Event(event_name, client=client).set()
            with contextlib.suppress(Exception):  # past the grace, closing stops the rest
                wait(futures, timeout=_STOP_GRACE_S)
            return ""
        if client.status not in ("running", "connecting"):
            break
        finished = sum(t.state.is_finished() for t in runner.study.get_trials(deepcopy=False))
        if progress is not None and finished > seen:
            progress.update(finished - seen)
        seen = max(seen, finished)
    failed = [f for f in futures if f.status != "finished"]
    if not failed:
        return ""
    if failed[0].status != "error":
        return (
            f"{where} went away mid-study (task {failed[0].status}); the records stay exact: "
            "rerun the same command to finish the budget"
        )
    error = failed[0].exception()
    return f"a worker task failed on {where}: {type(error).__name__}: {error}"
