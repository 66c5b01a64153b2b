"""Local worker processes that share one study (``n_workers``).

The launcher creates the study, the storage schema and the MLflow parent run once, then
starts the workers, so workers starting together never race to create them. Each worker is
``agehpo worker`` with the same parameters: it claims trials from the shared budget until it
is spent. The launcher shows their progress and, on SIGINT or SIGTERM, passes the signal on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from agehpo.runner import Terminated
from agehpo.storage import StorageError
from agehpo.study import FINISHED_STATES, StudyConfig

_POLL_S = 1.0
_STOP_GRACE_S = 20.0


def check_parallel_storage(config: StudyConfig) -> None:
    """Refuse SQLite for several worker processes, with the alternatives.

    Raises:
        StorageError: For an ``sqlite:`` storage and ``n_workers > 1``.
    """
    if config.n_workers > 1 and config.storage.startswith("sqlite"):
        raise StorageError(
            f"storage={config.storage!r} with n_workers={config.n_workers}: SQLite serialises "
            "writers and Optuna advises against it for parallel workers; use a journal file "
            "(-P storage=optuna.journal) or a database server (-P storage=postgresql://...)"
        )


def worker_command(config: StudyConfig) -> list[str]:
    """The command line of one worker: ``agehpo worker`` with the same parameters."""
    command = [sys.executable, "-m", "agehpo", "worker"]
    for config_field in dataclasses.fields(StudyConfig):
        value = getattr(config, config_field.name)
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        command += [f"--{config_field.name.replace('_', '-')}", text]
    return command


def _stop(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signum)
    deadline = time.monotonic() + _STOP_GRACE_S
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def run_workers(
    config: StudyConfig,
    study: optuna.Study,
    *,
    parent_run_id: str | None,
    progress: tqdm | None = None,
) -> list[int]:
    """Start ``config.n_workers`` workers on ``study`` and wait for them.

    Args:
        config: The run's parameters; each worker gets the same.
        study: The (already created) study, polled for progress.
        parent_run_id: MLflow run the workers nest their trial runs under.
        progress: Advanced as trials finish.

    Returns:
        The numbers of the trials that finished while the workers ran.
    """
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state in FINISHED_STATES}
    env = dict(os.environ)
    if parent_run_id is not None:
        env["MLFLOW_RUN_ID"] = parent_run_id
    command = worker_command(dataclasses.replace(config, n_workers=1))
    workers = [subprocess.Popen(command, env=env) for _ in range(config.n_workers)]
    seen = len(before)
    try:
        while any(worker.poll() is None for worker in workers):
            time.sleep(_POLL_S)
            finished = sum(t.state in FINISHED_STATES for t in study.get_trials(deepcopy=False))
            if progress is not None and finished > seen:
                progress.update(finished - seen)
            seen = max(seen, finished)
    except KeyboardInterrupt as interrupt:
        _stop(workers, signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
        raise
    failed = [(i, w.returncode) for i, w in enumerate(workers) if w.returncode != 0]
    if failed:
        print(
            "agehpo: warning: worker(s) exited with status "
            + ", ".join(f"#{i}: {code}" for i, code in failed),
            file=sys.stderr,
        )
    return sorted(
        t.number
        for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        )
        if t.number not in before
    )
