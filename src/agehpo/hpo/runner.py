"""The trial loop: claim a trial within the shared budget, run it, record it.

Optuna's ``Study.optimize`` cannot cap a budget shared by several workers exactly: two workers
can both start "the last" trial, and a trial whose process died would use up budget. This
runner claims each trial under a lock every worker of the storage sees, writes the trial's
owner record in the same critical section, fails (and retries) the trials of dead workers
before counting, and otherwise does what ``optimize`` does: heartbeats, FAIL on errors,
callbacks. It stops through an :class:`~agehpo.hpo.stopping.OrderlyStop`, never by an exception
raised into a storage write.
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
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from agehpo import _compat
from agehpo.hpo.liveness import (
    FAIL_REASON_ATTR,
    OWNER_ATTR,
    WORKER_ATTR,
    Owner,
    budget_used,
    fail_dead_trials,
    retry_trial,
)
from agehpo.hpo.stopping import OrderlyStop, Terminated
from agehpo.hpo.storage import BudgetLock, heartbeat_settings
from agehpo.objective import NonFiniteLossError

__all__ = ["Terminated", "TrialCallback", "TrialRunner"]

_logger = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@contextlib.contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat while it runs, so a dead worker's trial goes stale."""
    interval = _compat.heartbeat_interval(study)
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        # The claim wrote the first beat.
        while not stop.wait(interval):
            _compat.record_heartbeat(study, trial)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class TrialRunner:
    """Runs trials until ``n_trials`` of the study's trials use up its budget, sharing that
    budget with every other worker of the study.

    Args:
        study: The study.
        objective: Called with each trial; returns the value to maximize.
        n_trials: The study's total budget: trials of every state count, except failures of
            dead or stopped workers, whose retries take their place.
        budget_lock: The lock all workers of this storage share.
        callbacks: Called after each trial with the study and the finished trial.
        timeout: Stop claiming new trials after this many seconds (0: no limit).
        stop: The process's orderly stop; None: one of the runner's own (tests, library use).
        clock: Wall-clock time, for the liveness checks.
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
        stop: OrderlyStop | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.study = study
        self.objective = objective
        self.n_trials = n_trials
        self.budget_lock = budget_lock
        self.callbacks = list(callbacks)
        self.deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        self.ran: list[int] = []
        self.stop = stop
        self.clock = clock
        # Set when the run ends early: no thread claims another trial.
        self.stopping = threading.Event()
        # Set on Ctrl-C or SIGTERM: running trials also end, at their next epoch.
        self.interrupted = stop.requested if stop is not None else threading.Event()

    def stop_at_epoch_end(
        self, trial: optuna.trial.BaseTrial, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """An epoch hook: end the trial (FAIL) once the run has been interrupted.

        Signals only set a flag (see :mod:`agehpo.hpo.stopping`), so every thread, the main
        one included, ends its trial here, between two storage writes.

        Args:
            trial: The running trial.
            epoch: The epoch just finished (1-based).
            metrics: Its metrics (unused).

        Raises:
            KeyboardInterrupt: :class:`Terminated` (or a plain KeyboardInterrupt for
                SIGINT) when :attr:`interrupted` is set.
        """
        if self.interrupted.is_set():
            error = self.stop.exception() if self.stop is not None else Terminated()
            error.args = (f"stopped after epoch {epoch}: the run was interrupted",)
            raise error

    def budget_left(self) -> int:
        """Trials still to claim; call under the budget lock, after failing dead trials."""
        trials = self.study.get_trials(deepcopy=False)
        if any(trial.state == TrialState.WAITING for trial in trials):
            return max(1, self.n_trials - budget_used(trials))  # a WAITING trial holds a place
        return self.n_trials - budget_used(trials)

    def fail_dead_trials(self) -> list[int]:
        """Fail and retry the trials of dead workers: same host at once, else by heartbeat.

        Call it under the budget lock.

        Returns:
            The numbers of the trials failed by agehpo's own checks (Optuna's stale check
            reports none).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        return fail_dead_trials(self.study, grace_s=heartbeat_settings()[1], clock=self.clock)

    def claim(self) -> optuna.Trial | None:
        """Start the next trial if the budget allows, else return None.

        The trial's owner record and first heartbeat are written under the same lock, so
        a trial is never RUNNING without a sign of life.
        """
        if self.stopping.is_set() or self.interrupted.is_set():
            return None
        if time.monotonic() >= self.deadline:
            return None
        with self.budget_lock.hold():
            self.fail_dead_trials()
            if self.budget_left() <= 0:
                return None
            with warnings.catch_warnings():
                # Optuna warns that heartbeats expect Study.optimize; this runner beats itself.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            owner = Owner.this_process()
            _compat.set_trial_system_attr(self.study, trial, OWNER_ATTR, owner.to_json())
            trial.set_user_attr(WORKER_ATTR, owner.worker)
            _compat.record_heartbeat(self.study, trial)
            return trial

    def _fail(self, trial: optuna.Trial, reason: str) -> FrozenTrial | None:
        """Tell FAIL with the reason; None when another worker already ended the trial."""
        try:
            trial.set_user_attr(FAIL_REASON_ATTR, reason[:500])
            return self.study.tell(trial, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # judged dead and failed by another worker meanwhile
            _logger.warning("Trial %d was already ended by another worker", trial.number)
            return None

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
                trial.set_user_attr(FAIL_REASON_ATTR, str(error))
                _logger.warning("Trial %d failed: %s", trial.number, error)
                state = TrialState.FAIL
            except KeyboardInterrupt as error:
                # Stopped, not failed: the trial's retry keeps its place in the budget.
                failed = self._fail(trial, f"{type(error).__name__}: {error}")
                if failed is not None:
                    retry_trial(self.study, failed)
                raise
            except BaseException as error:
                # A bug: the trial fails, counts, and must not stay RUNNING in the storage.
                self._fail(trial, f"{type(error).__name__}: {error}")
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
            self._raise_if_interrupted()
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
        self._raise_if_interrupted()
        return self.ran

    def _raise_if_interrupted(self) -> None:
        """A stop that came between two trials ends the run as one that came mid-trial."""
        if self.interrupted.is_set():
            raise self.stop.exception() if self.stop is not None else Terminated()

    def _stop(self, *, interrupt: bool) -> None:
        """Claim no more trials; on Ctrl-C or SIGTERM also end the running ones.

        A trial broken by a bug leaves the others sound: they finish, but the rest of the
        budget is not spent before the error is reported.
        """
        self.stopping.set()
        if interrupt:
            self.interrupted.set()
