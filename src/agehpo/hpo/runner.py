"""The trial loop: claim a trial within the budget the workers share, run it, record it."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

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

_logger = logging.getLogger(__name__)


class TrialRunner:
    """Runs trials until the study's trials use up ``n_trials``, a budget shared by workers.

    ``Study.optimize`` cannot do three things this runner is for. It claims each trial under
    a lock every worker of the storage sees, after failing the trials of dead workers, and
    writes the trial's owner record and first heartbeat in that critical section, so the
    budget is exact and no trial is RUNNING without a sign of life. It stops in order: a
    signal only sets a flag, and each running trial ends FAIL at its next epoch, never by
    an exception raised into a storage write. And a trial a dead or stopped worker left is
    retried with the same params without using budget. The rest (ask and tell, Optuna's
    heartbeat thread, threads for ``n_jobs``) is Optuna's.

    Args:
        study: The study.
        objective: Called with each trial; returns the value to maximize.
        n_trials: The study's total budget (see :func:`~agehpo.hpo.liveness.budget_used`).
        budget_lock: The lock all workers of this storage share.
        callbacks: Called after each trial with the study and the finished trial.
        timeout: Stop claiming new trials after this many seconds (0: no limit).
        stop: The process's orderly stop; None: one of the runner's own.
        clock: Wall-clock time, for the timeout and the liveness checks.
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Callable[[optuna.Trial], float],
        *,
        n_trials: int,
        budget_lock: BudgetLock,
        callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
        timeout: float = 0,
        stop: OrderlyStop | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.study = study
        self.objective = objective
        self.n_trials = n_trials
        self.budget_lock = budget_lock
        self.callbacks = list(callbacks)
        self.clock = clock
        self.deadline = clock() + timeout if timeout > 0 else float("inf")
        self.ran: list[int] = []
        self.stop = stop
        self.stopping = threading.Event()  # no thread claims another trial
        # Ctrl-C or SIGTERM: running trials end too, at their next epoch.
        self.interrupted = stop.requested if stop is not None else threading.Event()

    def _interruption(self) -> KeyboardInterrupt:
        return self.stop.exception() if self.stop is not None else Terminated()

    def stop_at_epoch_end(
        self, trial: optuna.trial.BaseTrial, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """An epoch hook: end the trial once the run is interrupted, between storage writes.

        Raises:
            KeyboardInterrupt: :class:`Terminated`, or KeyboardInterrupt for SIGINT.
        """
        if self.interrupted.is_set():
            error = self._interruption()
            error.args = (f"stopped after epoch {epoch}: the run was interrupted",)
            raise error

    def budget_left(self) -> int:
        """Trials still to claim; call it under the budget lock, after failing dead trials."""
        trials = self.study.get_trials(deepcopy=False)
        left = self.n_trials - budget_used(trials)
        waiting = any(trial.state == TrialState.WAITING for trial in trials)
        return max(1, left) if waiting else left  # a WAITING retry holds its place

    def fail_dead_trials(self) -> list[int]:
        """Fail and retry dead workers' trials (call it under the budget lock).

        Returns:
            The numbers of the trials agehpo's own check failed (Optuna's reports none).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        return fail_dead_trials(self.study, grace_s=heartbeat_settings()[1], clock=self.clock)

    def claim(self) -> optuna.Trial | None:
        """Start the next trial, with its owner record and first heartbeat; None when done."""
        if self.stopping.is_set() or self.interrupted.is_set() or self.clock() >= self.deadline:
            return None
        with self.budget_lock.hold():
            self.fail_dead_trials()
            if self.budget_left() <= 0:
                return None
            with warnings.catch_warnings():  # "heartbeats expect Study.optimize": Optuna's own
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            owner = Owner.this_process()
            _compat.set_trial_system_attr(self.study, trial, OWNER_ATTR, owner.to_json())
            trial.set_user_attr(WORKER_ATTR, owner.worker)
            _compat.record_heartbeat(self.study, trial)
            return trial

    def _fail(self, trial: optuna.Trial, error: BaseException) -> FrozenTrial | None:
        """Tell FAIL with the reason; None when another worker already ended the trial."""
        try:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{type(error).__name__}: {error}"[:500])
            return self.study.tell(trial, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # judged dead and failed by another worker
            _logger.warning("Trial %d was already ended by another worker", trial.number)
            return None

    def run_one(self, trial: optuna.Trial) -> FrozenTrial:
        """Run the objective on ``trial``, record its outcome and call the callbacks."""
        value: float | None = None
        state: TrialState | None = None
        with _compat.heartbeat_thread(self.study, trial):
            try:
                value = self.objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except NonFiniteLossError as error:
                trial.set_user_attr(FAIL_REASON_ATTR, str(error))
                _logger.warning("Trial %d failed: %s", trial.number, error)
                state = TrialState.FAIL
            except KeyboardInterrupt as error:  # stopped: the retry keeps its budget place
                if (failed := self._fail(trial, error)) is not None:
                    retry_trial(self.study, failed)
                raise
            except BaseException as error:  # a bug: the trial fails and counts
                self._fail(trial, error)
                raise
        frozen = self.study.tell(trial, value, state=state)
        self.ran.append(frozen.number)
        for callback in self.callbacks:
            callback(self.study, frozen)
        return frozen

    def _loop(self, progress: tqdm | None, errors: list[BaseException]) -> None:
        """Claim and run trials until done; an error stops every thread's claims."""
        try:
            while (trial := self.claim()) is not None:
                frozen = self.run_one(trial)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix_str(f"trial {frozen.number}: {frozen.state.name}")
        except BaseException as error:
            errors.append(error)
            self.stopping.set()
            if isinstance(error, KeyboardInterrupt):
                self.interrupted.set()  # the other threads' trials end at their next epoch

    def run(self, n_jobs: int = 1, progress: tqdm | None = None) -> list[int]:
        """Claim and run trials until the budget is met, with ``n_jobs`` threads.

        A trial broken by a bug lets the other threads finish theirs, then raises.

        Returns:
            The numbers of the trials this runner ran.
        """
        errors: list[BaseException] = []
        if n_jobs <= 1:
            self._loop(progress, errors)
        else:
            with ThreadPoolExecutor(n_jobs, thread_name_prefix="trial") as pool:
                futures = [pool.submit(self._loop, progress, errors) for _ in range(n_jobs)]
                # Wait in an interruptible wait: on Python 3.11 a signal landing in
                # Thread.join abandons that thread, its trial still RUNNING.
                while True:
                    try:
                        wait(futures)
                        break
                    except KeyboardInterrupt as error:  # Ctrl-C without an OrderlyStop
                        errors.append(error)
                        self.stopping.set()
                        self.interrupted.set()
        if errors:
            raise errors[0]
        if self.interrupted.is_set():  # a stop between two trials
            raise self._interruption()
        return self.ran
