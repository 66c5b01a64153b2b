"""TrialRunner with threads: errors and signals end the run without losing a trial."""

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

from agehpo.hpo.liveness import Owner, budget_used
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.stopping import OrderlyStop, Terminated
from agehpo.hpo.storage import BudgetLock

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 10
EPOCH_S = 0.05


def _runner(
    tmp_path: Path,
    before_epochs: Callable[[optuna.Trial], None] | None,
    stop: OrderlyStop | None = None,
) -> tuple[optuna.Study, TrialRunner]:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    holder: list[TrialRunner] = []

    def objective(trial: optuna.Trial) -> float:
        if before_epochs is not None:
            before_epochs(trial)
        for epoch in range(1, EPOCHS + 1):
            time.sleep(EPOCH_S)
            holder[0].stop_at_epoch_end(trial, epoch, {})
        return 1.0

    holder.append(
        TrialRunner(study, objective, n_trials=40, budget_lock=BudgetLock(url, "s"), stop=stop)
    )
    return study, holder[0]


@pytest.mark.parametrize("broken_thread", ["trial_0", "trial_1"])
def test_a_broken_trial_stops_claims_and_lets_the_running_trials_finish(
    broken_thread: str, tmp_path: Path
) -> None:
    broke = threading.Event()

    def break_once(trial: optuna.Trial) -> None:
        if threading.current_thread().name == broken_thread and not broke.is_set():
            broke.set()
            raise RuntimeError("a bug in the objective")

    study, runner = _runner(tmp_path, break_once)
    with pytest.raises(RuntimeError, match="a bug in the objective"):
        runner.run(n_jobs=2)
    states = [t.state for t in study.get_trials()]
    # The healthy thread completed the trial it was running (all its epochs: a bug is not
    # an interrupt) and claimed no more; 40 trials would have taken 10 s.
    assert states.count(TrialState.FAIL) == 1
    assert states.count(TrialState.COMPLETE) >= 1
    assert len(states) <= 4, states
    assert all(state.is_finished() for state in states)


@pytest.mark.parametrize("n_signals", [1, 2])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_ctrl_c_ends_every_running_trial_fail_and_queues_its_retry(
    n_signals: int, n_jobs: int, tmp_path: Path
) -> None:
    stop = OrderlyStop()
    study, runner = _runner(tmp_path, None, stop)

    def interrupt() -> None:
        # Mid-trial, then (for two signals) again while the trials are ending.
        time.sleep(EPOCH_S * 3.5)
        for _ in range(n_signals):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(EPOCH_S / 5)

    threading.Thread(target=interrupt, daemon=True).start()
    with stop.installed(), pytest.raises(KeyboardInterrupt):
        runner.run(n_jobs=n_jobs)
    stop.done()
    assert stop.exit_code == 130
    assert not [t for t in threading.enumerate() if t.name.startswith("trial_")]
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert len(failed) == n_jobs and len(retries) == n_jobs, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in failed:
        assert "interrupted" in trial.user_attrs["fail_reason"]
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


def test_every_claim_carries_an_owner_record_and_the_worker(tmp_path: Path) -> None:
    study, runner = _runner(tmp_path, None)
    trial = runner.claim()
    assert trial is not None
    frozen = study.get_trials()[0]
    owner = Owner.of(frozen)
    assert owner == Owner.this_process()
    assert frozen.user_attrs["agehpo.worker"] == owner.worker


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
