"""The trial loop: claim a trial within the shared budget, run it, record it.

Optuna's ``Study.optimize`` cannot cap a budget shared by several workers exactly: two workers
can both start "the last" trial. This runner claims each trial under a lock every worker of the
storage sees, and otherwise does what ``optimize`` does: heartbeats, FAIL on errors, callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from agehpo.objective import NonFiniteLossError
from agehpo.storage import BudgetLock

_logger = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the running trial fails cleanly and runs end."""


TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@contextlib.contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat while it runs, so a dead worker's trial goes stale."""
    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not storage.get_heartbeat_interval():
        yield
        return
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class TrialRunner:
    """Runs trials until the study holds ``n_trials`` of them, sharing that budget with
    every other worker of the study.

    Args:
        study: The study.
        objective: Called with each trial; returns the value to maximize.
        n_trials: The study's total budget: existing trials of every state count.
        budget_lock: The lock all workers of this storage share.
        callbacks: Called after each trial with the study and the finished trial.
        timeout: Stop claiming new trials after this many seconds (0: no limit).
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Callable[[optuna.Trial], float],
        *,
        n_trials: int,
        budget_lock: BudgetLock,
        callbacks: Sequence[TrialCallback] = (),
        timeout: float = 0,
    ) -> None:
        self.study = study
        self.objective = objective
        self.n_trials = n_trials
        self.budget_lock = budget_lock
        self.callbacks = list(callbacks)
        self.deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        self.ran: list[int] = []
        # Set when the run ends early: no thread claims another trial.
        self.stopping = threading.Event()
        # Set on Ctrl-C or SIGTERM: running trials also end, at their next epoch.
        self.interrupted = threading.Event()

    def stop_at_epoch_end(
        self, trial: optuna.trial.BaseTrial, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """An epoch hook: end the trial (FAIL) once the run has been interrupted.

        Signals reach the main thread only; with ``n_jobs > 1`` the trials run in pool
        threads, which would otherwise train on until their trials end.

        Args:
            trial: The running trial.
            epoch: The epoch just finished (1-based).
            metrics: Its metrics (unused).

        Raises:
            Terminated: When :attr:`interrupted` is set.
        """
        if self.interrupted.is_set():
            raise Terminated(f"stopped after epoch {epoch}: the run was interrupted")

    def claim(self) -> optuna.Trial | None:
        """Start the next trial if the budget allows, else return None.

        A WAITING trial (a retry of a dead worker's trial, or an enqueued one) is always
        run: it already holds a place in the budget.
        """
        if self.stopping.is_set() or time.monotonic() >= self.deadline:
            return None
        if isinstance(self.study._storage, BaseHeartbeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        with self.budget_lock.hold():
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(trial.state == TrialState.WAITING for trial in trials)
            if not waiting and len(trials) >= self.n_trials:
                return None
            with warnings.catch_warnings():
                # Optuna warns that heartbeats expect Study.optimize; this runner beats itself.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                return self.study.ask()

    def run_one(self, trial: optuna.Trial) -> FrozenTrial:
        """Run the objective on ``trial``, record its outcome and call the callbacks."""
        value: float | None = None
        state: TrialState | None = None
        with _heartbeat(self.study, trial):
            try:
                value = self.objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except NonFiniteLossError as error:
                trial.set_user_attr("fail_reason", str(error))
                _logger.warning("Trial %d failed: %s", trial.number, error)
                state = TrialState.FAIL
            except BaseException as error:
                # Interrupted or broken: the trial must not stay RUNNING in the storage.
                trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:500])
                self.study.tell(trial, state=TrialState.FAIL)
                raise
        frozen = self.study.tell(trial, value, state=state)
        self.ran.append(frozen.number)
        for callback in self.callbacks:
            callback(self.study, frozen)
        return frozen

    def run(self, n_jobs: int = 1, progress: tqdm | None = None) -> list[int]:
        """Claim and run trials until the budget is met, with ``n_jobs`` threads.

        Returns:
            The numbers of the trials this call ran.
        """

        def loop() -> None:
            while (trial := self.claim()) is not None:
                frozen = self.run_one(trial)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix_str(f"trial {frozen.number}: {frozen.state.name}")

        if n_jobs <= 1:
            loop()
            return self.ran
        pool = ThreadPoolExecutor(n_jobs, thread_name_prefix="trial")
        futures: list[Future[None]] = []
        first_error: BaseException | None = None
        try:
            for _ in range(n_jobs):
                futures.append(pool.submit(loop))
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        except BaseException as error:
            first_error = error
            self._stop(interrupt=isinstance(error, KeyboardInterrupt))
        # Wait for every thread before leaving, in an interruptible wait: on Python 3.11 a
        # signal landing in Thread.join (the pool's shutdown) abandons that thread, and the
        # interpreter would exit with its trial still RUNNING in the storage.
        while True:
            try:
                wait(futures)
                break
            except KeyboardInterrupt as again:  # a second Ctrl-C or SIGTERM
                first_error = first_error or again
                self._stop(interrupt=True)
        pool.shutdown(wait=True)  # the threads are idle now: nothing left to interrupt
        if first_error is not None:
            raise first_error
        for future in futures:  # a thread that broke after the first wait returned
            future.result()
        return self.ran

    def _stop(self, *, interrupt: bool) -> None:
        """Claim no more trials; on Ctrl-C or SIGTERM also end the running ones.

        A trial broken by a bug leaves the others sound: they finish, but the rest of the
        budget is not spent before the error is reported.
        """
        self.stopping.set()
        if interrupt:
            self.interrupted.set()
