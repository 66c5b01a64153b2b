"""TrialRunner with threads: errors and signals end the run without losing a trial.

The threads meet at barriers and events instead of sleeping, and time is a fake clock.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from agehpo.hpo.liveness import HEARTBEAT_ATTR, OWNER_ATTR, Owner, budget_used
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import OrderlyStop, Terminated
from agehpo.hpo.storage import BudgetLock, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
EPOCHS = 10
WAIT_S = 30  # only a broken test waits this long


def _runner(
    tmp_path: Path,
    before_epochs: Callable[[optuna.Trial], None] | None,
    stop: OrderlyStop | None = None,
    **kwargs: object,
) -> tuple[optuna.Study, TrialRunner]:
    url = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    holder: list[TrialRunner] = []

    def objective(trial: optuna.Trial) -> float:
        if before_epochs is not None:
            before_epochs(trial)
        for epoch in range(1, EPOCHS + 1):
            holder[0].stop_at_epoch_end(trial, epoch, {})
        return 1.0

    budget_lock = BudgetLock(url, "s")
    holder.append(
        TrialRunner(study, objective, n_trials=40, budget_lock=budget_lock, stop=stop, **kwargs)  # type: ignore[arg-type]
    )
    return study, holder[0]


@pytest.mark.parametrize("broken_thread", ["trial_0", "trial_1"])
def test_a_broken_trial_stops_claims_and_lets_the_running_trials_finish(
    broken_thread: str, tmp_path: Path
) -> None:
    both_running = threading.Barrier(2)
    first: set[str] = set()

    def break_once(trial: optuna.Trial) -> None:
        name = threading.current_thread().name
        if name in first:
            return
        first.add(name)
        both_running.wait(WAIT_S)
        if name == broken_thread:
            raise RuntimeError("a bug in the objective")
        # The healthy trial goes on only once the bug stopped the claims.
        assert runner.stopping.wait(WAIT_S)

    study, runner = _runner(tmp_path, break_once)
    with pytest.raises(RuntimeError, match="a bug in the objective"):
        runner.run(n_jobs=2)
    trials = study.get_trials()
    # The healthy thread completed its trial (all epochs: a bug is not an interrupt) and
    # claimed no more.
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "FAIL"]
    assert len(trials[0].intermediate_values) == len(trials[1].intermediate_values) == 0
    assert runner.ran == [t.number for t in trials if t.state == TrialState.COMPLETE]


@pytest.mark.parametrize("n_signals", [1, 2])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_ctrl_c_ends_every_running_trial_fail_and_queues_its_retry(
    n_signals: int, n_jobs: int, tmp_path: Path
) -> None:
    stop = OrderlyStop()

    def interrupt() -> None:
        # Mid-trial, once every thread runs one; again (two signals) while they end.
        for _ in range(n_signals):
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested.wait(WAIT_S)

    all_running = threading.Barrier(n_jobs, action=interrupt)
    study, runner = _runner(tmp_path, lambda trial: all_running.wait(WAIT_S), stop)
    previous = stop.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(n_jobs=n_jobs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stop.done()
    assert stop.exit_code == 130
    assert not [t for t in threading.enumerate() if t.name.startswith("trial_")]
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert len(failed) == n_jobs and len(retries) == n_jobs, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in failed:
        assert trial.user_attrs["fail_reason"] == (
            "KeyboardInterrupt: stopped after epoch 1: the run was interrupted"
        )
    # Each stopped trial keeps its params and its place in the budget through its retry.
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == [t.number for t in failed]
    assert budget_used(trials) == n_jobs


def test_a_stop_between_trials_claims_nothing_and_still_raises(tmp_path: Path) -> None:
    stop = OrderlyStop()
    study, runner = _runner(tmp_path, None, stop)
    stop.request(signal.SIGTERM)
    with pytest.raises(Terminated):
        runner.run()
    stop.done()
    assert study.get_trials() == []


def test_every_claim_carries_an_owner_record_the_worker_and_a_heartbeat(tmp_path: Path) -> None:
    url = str(tmp_path / "optuna.journal")
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    runner = TrialRunner(study, lambda t: 1.0, n_trials=2, budget_lock=BudgetLock(url, "s"))
    before = time.time()
    trial = runner.claim()
    assert trial is not None
    frozen = study.get_trials()[0]
    owner = Owner.of(frozen)
    assert owner == Owner.this_process()
    assert frozen.user_attrs["agehpo.worker"] == owner.worker
    assert frozen.system_attrs[HEARTBEAT_ATTR] >= before
    assert runner.budget_left() == 1
    assert runner.run_one(trial).state == TrialState.COMPLETE


def test_the_budget_is_exact_and_a_retry_keeps_its_place(tmp_path: Path) -> None:
    study, runner = _runner(tmp_path, None)
    runner.n_trials = 3
    assert runner.run() == [0, 1, 2]
    assert runner.claim() is None and runner.budget_left() == 0
    study.enqueue_trial({})  # a WAITING retry: it runs even though the budget is met
    assert runner.budget_left() == 1
    assert runner.run() == [0, 1, 2, 3]


def test_the_timeout_stops_the_claims_by_the_clock(tmp_path: Path) -> None:
    now = [1000.0]
    study, runner = _runner(tmp_path, None, timeout=60, clock=lambda: now[0])
    assert runner.claim() is not None
    now[0] += 60
    assert runner.claim() is None
    assert len(study.get_trials()) == 1


def test_a_dead_workers_trial_without_owner_is_failed_once_the_clock_passes_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGEHPO_HEARTBEAT_GRACE", "30")
    now = [0.0]
    study, runner = _runner(tmp_path, None, clock=lambda: now[0])
    study.ask()  # killed before it wrote its owner record
    started = study.get_trials()[0].datetime_start
    assert started is not None
    now[0] = started.timestamp() + 29
    assert runner.fail_dead_trials() == []
    now[0] += 2
    assert runner.fail_dead_trials() == [0]
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    assert OWNER_ATTR not in study.get_trials()[1].system_attrs


def test_a_trial_another_worker_already_failed_is_not_failed_twice(tmp_path: Path) -> None:
    def judged_dead_meanwhile(trial: optuna.Trial) -> None:
        # Another worker judged this one dead (e.g. a clock jump) and failed its trial.
        study.tell(trial.number, state=TrialState.FAIL)
        raise RuntimeError("the objective breaks afterwards")

    study, runner = _runner(tmp_path, judged_dead_meanwhile)
    trial = runner.claim()
    assert trial is not None
    with pytest.raises(RuntimeError, match="breaks afterwards"):
        runner.run_one(trial)
    (only,) = study.get_trials()
    assert only.state == TrialState.FAIL
    assert "fail_reason" not in only.user_attrs
