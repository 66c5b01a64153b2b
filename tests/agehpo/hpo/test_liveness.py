"""Owner records, dead workers and the budget: a real journal storage, real processes."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from agehpo import _compat
from agehpo.hpo.liveness import (
    FAIL_REASON_ATTR,
    OWNER_ATTR,
    WORKER_ATTR,
    Owner,
    budget_used,
    dead_reason,
    fail_dead_trials,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"x": FloatDistribution(0, 1)}


def _study(tmp_path: Path) -> optuna.Study:
    backend = JournalFileBackend(str(tmp_path / "optuna.journal"))
    return optuna.create_study(storage=JournalStorage(backend), study_name="s")


def _exited_pid() -> int:
    """The pid of a process that has already exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _claim(study: optuna.Study, owner: Owner | None) -> optuna.Trial:
    trial = study.ask(SPACE)
    if owner is not None:
        _compat.set_trial_system_attr(study, trial, OWNER_ATTR, owner.to_json())
        trial.set_user_attr(WORKER_ATTR, owner.worker)
        trial.set_user_attr(FAIL_REASON_ATTR, "left over from an earlier attempt")
    return trial


def test_this_process_is_alive_and_a_reaped_child_is_gone() -> None:
    me = Owner.this_process()
    assert me.is_local() and not me.is_gone()
    dead = Owner(me.host, _exited_pid(), None, me.namespace)
    assert dead.is_gone()


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    me = Owner.this_process()
    if me.started is None:
        pytest.skip("process start times need /proc")
    impostor = Owner(me.host, me.pid, me.started - 1, me.namespace)
    assert impostor.is_gone()


def test_an_owner_on_another_host_or_namespace_is_never_judged_by_pid() -> None:
    me = Owner.this_process()
    pid = _exited_pid()
    assert not Owner("elsewhere", pid, None, me.namespace).is_gone()
    assert not Owner(me.host, pid, None, "another-namespace").is_gone()


def test_a_malformed_owner_record_counts_as_none(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask(SPACE)
    _compat.set_trial_system_attr(study, trial, OWNER_ATTR, "{not json")
    frozen = study.get_trials()[0]
    assert Owner.of(frozen) is None


def test_a_trial_without_owner_is_dead_only_after_the_grace_period(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.ask(SPACE)
    frozen = study.get_trials()[0]
    assert frozen.datetime_start is not None
    start = frozen.datetime_start.timestamp()
    assert dead_reason(frozen, grace_s=30, now=start + 29) is None
    reason = dead_reason(frozen, grace_s=30, now=start + 31)
    assert reason is not None and "no owner record" in reason


def test_dead_local_workers_trials_fail_at_once_and_are_retried_clean(tmp_path: Path) -> None:
    study = _study(tmp_path)
    me = Owner.this_process()
    dead = _claim(study, Owner(me.host, _exited_pid(), None, me.namespace))
    alive = _claim(study, me)
    remote = _claim(study, Owner("elsewhere", 1, None, "ns"))
    # Well inside the grace period: only the same-host check can tell.
    failed = fail_dead_trials(study, grace_s=3600)
    assert failed == [dead.number]
    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[remote.number].state == TrialState.RUNNING
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == trials[dead.number].params
    # The retry is a fresh attempt: no owner, worker or old failure reason.
    assert OWNER_ATTR not in retry.system_attrs
    assert WORKER_ATTR not in retry.user_attrs and FAIL_REASON_ATTR not in retry.user_attrs
    # A second check (another worker) changes nothing.
    assert fail_dead_trials(study, grace_s=3600) == []
    assert len(study.get_trials()) == 4


def test_budget_counts_everything_but_failures_a_retry_replaced(tmp_path: Path) -> None:
    study = _study(tmp_path)
    me = Owner.this_process()
    study.tell(study.ask(SPACE), 0.5)  # COMPLETE
    study.tell(study.ask(SPACE), state=TrialState.FAIL)  # the objective failed: counts
    _claim(study, Owner(me.host, _exited_pid(), None, me.namespace))
    assert budget_used(study.get_trials()) == 3
    fail_dead_trials(study, grace_s=3600)
    # FAIL (dead) + WAITING retry take one place.
    assert budget_used(study.get_trials()) == 3
    # The retry dies too: still one place, and its retry remembers the whole history.
    retry = study.ask()
    _compat.set_trial_system_attr(
        study, retry, OWNER_ATTR, Owner(me.host, _exited_pid(), None, me.namespace).to_json()
    )
    fail_dead_trials(study, grace_s=3600)
    trials = study.get_trials()
    assert [t.state for t in trials].count(TrialState.FAIL) == 3
    assert budget_used(trials) == 3
    assert trials[-1].system_attrs["retry_history"] == [2, 3]


def test_an_old_trial_start_is_read_from_the_storage(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.RUNNING, params={"x": 0.5}, distributions=SPACE)
    )
    frozen = study.get_trials()[0]
    later = (frozen.datetime_start or datetime.datetime.now()).timestamp() + 100
    assert fail_dead_trials(study, grace_s=30, clock=lambda: later) == [0]
