"""The trial loop: claim a trial within the budget the workers share, run it, record it."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import optuna
from optuna.trial import BaseTrial, FrozenTrial, TrialState
from tqdm.auto import tqdm

from agehpo import _compat
from agehpo.hpo import liveness
from agehpo.hpo.liveness import FAIL_REASON_ATTR, Owner, retry_trial
from agehpo.hpo.stopping import OrderlyStop
from agehpo.hpo.storage import BudgetLock, heartbeat_settings
from agehpo.objective import NonFiniteLossError

_logger = logging.getLogger(__name__)


class TrialRunner:
    """Runs trials maximizing ``objective`` until the study's trials use up ``n_trials``, a
    budget workers share (see :func:`~agehpo.hpo.liveness.budget_used`); claims none after
    ``timeout`` s (0: no limit); ``stop``: the process's orderly stop (None: an own one).

    Unlike ``Study.optimize``: claims under a lock all workers see (exact budget); a signal
    ends running trials FAIL at their next epoch; dead or stopped trials retry off-budget."""

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
        self.study, self.objective, self.n_trials = study, objective, n_trials
        self.budget_lock, self.callbacks, self.clock = budget_lock, list(callbacks), clock
        self.deadline = clock() + timeout if timeout > 0 else float("inf")
        self.ran: list[int] = []
        self.stop = stop or OrderlyStop()
        self.stopping = threading.Event()  # no thread claims another trial
        self.interrupted = self.stop.requested  # and running trials end at their next epoch

    def stop_at_epoch_end(self, trial: BaseTrial, epoch: int, metrics: Mapping[str, float]) -> None:
        """An epoch hook: end the trial once the run is interrupted, between storage writes."""
        if self.interrupted.is_set():
            error = self.stop.exception()
            error.args = (f"stopped after epoch {epoch}: the run was interrupted",)
            raise error

    def budget_left(self) -> int:
        """Trials still to claim; call it under the budget lock, after failing dead trials."""
        trials = self.study.get_trials(deepcopy=False)
        left = self.n_trials - liveness.budget_used(trials)
        waiting = any(trial.state == TrialState.WAITING for trial in trials)
        return max(1, left) if waiting else left  # a WAITING retry holds its place

    def fail_dead_trials(self) -> list[int]:
        """Fail and retry dead workers' trials (under the budget lock); returns agehpo's."""
        grace_s = heartbeat_settings()[1]
        return liveness.fail_dead_trials(self.study, grace_s=grace_s, clock=self.clock)

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
            _compat.set_trial_system_attr(self.study, trial, liveness.OWNER_ATTR, owner.to_json())
            trial.set_user_attr(liveness.WORKER_ATTR, owner.worker)
            _compat.record_heartbeat(self.study, trial)
            return trial

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
            except BaseException as error:  # a bug fails and counts; a stop's retry keeps its place
                try:
                    trial.set_user_attr(FAIL_REASON_ATTR, f"{type(error).__name__}: {error}"[:500])
                    failed = self.study.tell(trial, state=TrialState.FAIL)
                except (ValueError, RuntimeError):  # judged dead and failed by another worker
                    _logger.warning("Trial %d was already ended by another worker", trial.number)
                else:
                    if isinstance(error, KeyboardInterrupt):
                        retry_trial(self.study, failed)
                raise
        frozen = self.study.tell(trial, value, state=state)
        self.ran.append(frozen.number)
        for callback in self.callbacks:
            callback(self.study, frozen)
        return frozen

    def _stopped_by(self, error: BaseException, errors: list[BaseException]) -> None:
        errors.append(error)  # no thread claims another trial; on an interrupt running ones end
        self.stopping.set()
        if isinstance(error, KeyboardInterrupt):
            self.interrupted.set()

    def _loop(self, progress: tqdm | None, errors: list[BaseException]) -> None:
        try:
            while (trial := self.claim()) is not None:
                frozen = self.run_one(trial)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix_str(f"trial {frozen.number}: {frozen.state.name}")
        except BaseException as error:
            self._stopped_by(error, errors)

    def run(self, n_jobs: int = 1, progress: tqdm | None = None) -> list[int]:
        """Claim and run trials with ``n_jobs`` threads; a bug raises once the others finished.
        Returns the numbers of the trials this runner ran."""
        errors: list[BaseException] = []
        if n_jobs <= 1:
            self._loop(progress, errors)
        else:
            with ThreadPoolExecutor(n_jobs, thread_name_prefix="trial") as pool:
                futures = [pool.submit(self._loop, progress, errors) for _ in range(n_jobs)]
                # Interruptible: on 3.11 a signal in Thread.join abandons a RUNNING trial.
                while not all(future.done() for future in futures):
                    try:
                        wait(futures)
                    except KeyboardInterrupt as error:  # Ctrl-C without an OrderlyStop
                        self._stopped_by(error, errors)
        if errors:
            raise errors[0]
        if self.interrupted.is_set():  # a stop between two trials
            raise self.stop.exception()
        return self.ran
