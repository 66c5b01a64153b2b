"""Local worker processes (``agehpo worker``) sharing one study: the launcher creates it
first, passes its orderly stop on and replaces dead workers, whose trials are retried."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

from optuna.trial import TrialState
from tqdm.auto import tqdm

from agehpo.config import StudyConfig
from agehpo.errors import WorkersFailedError
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import DEADLINE_S, OrderlyStop

_STOP_GRACE_S = DEADLINE_S - 2.0  # most of the launcher's own stop deadline
EXIT_USAGE = 2


def _stop(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signum)
    for worker in workers:
        try:
            worker.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()  # its trial keeps its owner record: the next run retries it at once
            worker.wait()


def _settle(runner: TrialRunner) -> int:
    with runner.budget_lock.hold():
        runner.fail_dead_trials()
        return runner.budget_left()


class _Pool:
    """The launcher's worker processes: started, watched, replaced when they die."""

    def __init__(self, config: StudyConfig, parent_run_id: str | None) -> None:
        self.env = dict(os.environ)
        if parent_run_id is not None:
            self.env["MLFLOW_RUN_ID"] = parent_run_id  # also makes each worker watch us
        self.command = [sys.executable, "-m", "agehpo", "worker"]
        for field in dataclasses.fields(StudyConfig):
            value = 1 if field.name == "n_workers" else getattr(config, field.name)
            text = json.dumps(value) if isinstance(value, dict) else str(value)
            self.command += [f"--{field.name.replace('_', '-')}", text]
        self.workers: list[subprocess.Popen[bytes]] = []
        self.dead: set[int] = set()
        self.restarts_left = config.n_workers
        self.start(config.n_workers)

    def start(self, count: int) -> None:
        self.workers += [subprocess.Popen(self.command, env=self.env) for _ in range(count)]

    def new_deaths(self) -> int:
        died = [w for w in self.workers if w.poll() not in (None, 0) and w.pid not in self.dead]
        for worker in died:
            self.dead.add(worker.pid)
            status = f"worker {worker.pid} exited with status {worker.returncode}"
            print(f"agehpo: warning: {status}; its running trial is retried", file=sys.stderr)
            if worker.returncode == EXIT_USAGE:
                _stop(self.workers, signal.SIGTERM)
                raise WorkersFailedError(
                    f"worker {worker.pid} rejected its parameters (exit {EXIT_USAGE}); "
                    "see its error line above"
                )
        return len(died)

    def replace(self, due: int, n_workers: int) -> None:
        if self.restarts_left <= 0:
            raise WorkersFailedError(
                f"workers kept dying: {len(self.dead)} exited with an error and {due} trial(s) "
                "are still due; rerun the same command to finish the budget"
            )
        count = min(due, n_workers, self.restarts_left)
        self.restarts_left -= count
        self.start(count)


def run_workers(
    config: StudyConfig,
    runner: TrialRunner,
    *,
    parent_run_id: str | None,
    stop: OrderlyStop,
    progress: tqdm | None = None,
    poll_s: float = 1.0,
) -> list[int]:
    """Start ``config.n_workers`` workers (each with ``config``, their trial runs nested under
    ``parent_run_id``), replacing dead ones while trials are due; ``stop`` is passed on.

    Returns the trials finished meanwhile; raises WorkersFailedError, or the stop's exception.
    """
    study = runner.study
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    pool = _Pool(config, parent_run_id)
    seen, deaths = len(before), 0
    while True:
        if stop.requested.wait(poll_s):
            _stop(pool.workers, signal.SIGINT if stop.signum == signal.SIGINT else signal.SIGTERM)
            _settle(runner)
            raise stop.exception()
        finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        if progress is not None and finished > seen:
            progress.update(finished - seen)
        seen = max(seen, finished)
        deaths += pool.new_deaths()
        if any(worker.poll() is None for worker in pool.workers):
            continue
        due = _settle(runner)
        if due <= 0 or not deaths:
            break  # done, or every worker stopped by itself (the timeout)
        pool.replace(due, config.n_workers)
        deaths = 0
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False, states=finished_states)
    return sorted(t.number for t in trials if t.number not in before)
