"""The fault suite: kills, signals and locked stores leave the study and MLflow exact.

Real processes (``python -m agehpo study`` and ``mlflow run``), a real journal file for
Optuna and a real SQLite tracking store. Heartbeats are short (AGEHPO_HEARTBEAT_INTERVAL=1,
AGEHPO_HEARTBEAT_GRACE=3) unless a test needs to show that a dead worker is recognised
without waiting for them. After every fault, ``check_invariants`` holds.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
from _faults import (
    STUDY,
    check_invariants,
    command_line,
    complete,
    descendants,
    is_alive,
    snapshot,
    trials,
)
from _mlflow_helpers import all_runs, describe, split_runs, study_runs
from _procs import (
    COMMON,
    ROOT,
    SMALL,
    Proc,
    agehpo_command,
    agehpo_env,
    kill_group,
    run,
    start,
    stop,
    wait_for,
)
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from agehpo.names import EPOCH_METRICS

pytestmark = pytest.mark.slow

# Trials long enough (~0.1-0.2 s per epoch, 15 epochs) to be caught mid-trial.
LONG = ("--n-samples", "2000", "--img-size", "12", "--batch-size", "8", "--n-epochs", "15")
LONG_PARAMS = ("n_samples=2000", "img_size=12", "batch_size=8", "n_epochs=15")
COMMON_PARAMS = ("device=cpu", "sampler=random", "pruner=none")


def _shorter(command: list[str]) -> list[str]:
    """The same command with 2 epochs per trial: a rerun only has to finish the budget, and
    the epoch count is no part of the study's identity."""
    return [
        "2" if before == "--n-epochs" else "n_epochs=2" if arg.startswith("n_epochs=") else arg
        for before, arg in zip(["", *command[:-1]], command, strict=True)
    ]


def _stores(tmp_path: Path) -> tuple[str, str]:
    """A journal file for Optuna and a SQLite store for MLflow, in the test's folder."""
    return str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path}/mlflow.db"


def _wait_mid_trial(storage: str, proc: Proc) -> list[FrozenTrial]:
    """The trials caught mid-way (a few epochs reported); fails when ``proc`` exits first."""
    return wait_for(
        lambda: _mid_trial(storage), timeout=240, interval=0.2, what="a trial mid-way", alive=proc
    )


def _mid_trial(storage: str, min_epochs: int = 2) -> list[FrozenTrial] | None:
    busy = [
        t
        for t in trials(storage)
        if t.state == TrialState.RUNNING and min_epochs <= len(t.intermediate_values) <= 12
    ]
    return busy or None


def _wait_gone(pids: list[int], timeout: float) -> float:
    """Seconds until every pid has exited; fails past ``timeout``."""
    began = time.monotonic()
    while any(is_alive(pid) for pid in pids):
        assert time.monotonic() - began < timeout, [(p, command_line(p)) for p in pids]
        time.sleep(0.05)
    return time.monotonic() - began


def _mlflow_run_command(*params: str) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local"]
    for param in params:
        command += ["-P", param]
    return command


def _trainer_of(proc: Proc) -> int:
    """The pid of the ``agehpo study`` process that ``mlflow run`` started."""

    def find() -> int | None:
        for pid in descendants(proc.pid):
            if "agehpo study" in command_line(pid):
                return pid
        return None

    return wait_for(find, timeout=120, what="mlflow run to start agehpo", alive=proc)


# -- agehpo study --------------------------------------------------------------------------


def test_a_sigkilled_run_is_repaired_by_an_immediate_rerun_with_the_exact_budget(
    tmp_path: Path,
) -> None:
    storage, tracking = _stores(tmp_path)
    # A long grace period: the rerun must recognise the dead trial by its owner, at once.
    env = agehpo_env(tmp_path, tracking, AGEHPO_HEARTBEAT_GRACE="600")
    command = agehpo_command("study", "--storage", storage, "--n-trials", "3", *LONG, *COMMON)

    first = start(command, env=env, cwd=tmp_path, log=tmp_path / "first.log")
    try:

        def one_done_one_running() -> list[FrozenTrial] | None:
            found = trials(storage)
            done = any(t.state == TrialState.COMPLETE for t in found)
            return found if done and _mid_trial(storage, 1) else None

        wait_for(
            one_done_one_running, timeout=240, interval=0.2, what="a trial mid-way", alive=first
        )
        kill_group(first)  # SIGKILL: no handler, no flush, no goodbye
    finally:
        stop(first)
    assert first.popen.returncode == -signal.SIGKILL

    before = trials(storage)
    (killed,) = [t for t in before if t.state == TrialState.RUNNING]
    complete_before = complete(before)
    assert complete_before
    assert any(r.info.status == "RUNNING" for r in study_runs(tracking, STUDY))

    began = time.monotonic()
    code, output = run(
        _shorter(command), env=env, cwd=tmp_path, log=tmp_path / "second.log", timeout=400
    )
    assert code == 0, output[-4000:]
    assert "budget is met" not in output
    after = check_invariants(
        storage, tracking, complete_before=complete_before, n_trials=3, finished=True
    )
    by_number = {t.number: t for t in after}
    assert by_number[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in after if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert time.monotonic() - began < 120, "the rerun waited for the dead trial"

    parents, trial_runs = split_runs(study_runs(tracking, STUDY))
    assert len(parents) == 2, describe(parents)
    dead_run = trial_runs[killed.number][0]
    assert dead_run.info.status in ("KILLED", "FAILED"), describe([dead_run])
    assert trial_runs[retry.number][0].info.status == "FINISHED"
    dead_parent = next(
        p for p in parents if p.info.run_id == dead_run.data.tags["mlflow.parentRunId"]
    )
    assert dead_parent.info.status in ("KILLED", "FAILED")


def test_sigterm_fails_the_running_trials_flushes_their_metrics_and_exits_143(
    tmp_path: Path,
) -> None:
    # Two threads: both trials end at their next epoch (one thread is the locked-store and
    # double-signal tests' case).
    n_jobs = 2
    storage, tracking = _stores(tmp_path)
    env = agehpo_env(tmp_path, tracking)
    command = agehpo_command(
        "study", "--storage", storage, "--n-trials", "4", "--n-jobs", str(n_jobs), *LONG, *COMMON
    )

    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "worker.log")
    try:
        _wait_mid_trial(storage, proc)
        os.kill(proc.pid, signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(10)
        took = time.monotonic() - sent
    finally:
        stop(proc)
    output = proc.output()
    assert code == 143, output
    assert took <= 10
    print(f"stop took {took:.2f} s")  # the closing note quotes these (pytest -s)
    assert "terminated (SIGTERM)" in output

    found = check_invariants(storage, tracking, complete_before={}, n_trials=4, finished=False)
    failed = [t for t in found if t.state == TrialState.FAIL]
    # Every running trial failed, none started after the signal, and each has a retry.
    assert len(failed) == n_jobs, snapshot(found)
    assert len([t for t in found if t.state == TrialState.WAITING]) == n_jobs
    assert max(len(t.intermediate_values) for t in failed) >= 2
    runs = study_runs(tracking, STUDY)
    parents, trial_runs = split_runs(runs)
    assert len(parents) == 1 and parents[0].info.status in ("KILLED", "FAILED"), describe(runs)
    client = MlflowClient(tracking)
    for trial in failed:
        assert "Terminated" in str(trial.user_attrs.get("fail_reason", ""))
        k = len(trial.intermediate_values)
        assert sorted(trial.intermediate_values) == list(range(1, k + 1))
        if k == 0:
            continue  # a thread stopped in its first epoch: no run was needed yet
        trial_run = trial_runs[trial.number][0]
        assert trial_run.info.status in ("FAILED", "KILLED")
        assert trial_run.data.tags["optuna.trial_state"] == "FAIL"
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(trial_run.info.run_id, key)]
            assert len(steps) == len(set(steps)), (key, steps)
            # Epoch k+1 may have been logged just before the trial stopped, never more.
            assert set(range(1, k + 1)) <= set(steps) <= set(range(1, k + 2)), (key, steps, k)
        accuracy = {
            m.step: m.value
            for m in client.get_metric_history(trial_run.info.run_id, "val_age_accuracy")
        }
        for step, value in trial.intermediate_values.items():
            assert math.isclose(accuracy[step], value, rel_tol=1e-9), step

    # The same command finishes the budget: the retries run, and exactly 4 trials count.
    code, output = run(
        _shorter(command), env=env, cwd=tmp_path, log=tmp_path / "again.log", timeout=400
    )
    assert code == 0, output[-4000:]
    again = check_invariants(storage, tracking, complete_before={}, n_trials=4, finished=True)
    for trial in failed:
        (retry,) = [t for t in again if t.system_attrs.get("failed_trial") == trial.number]
        assert retry.params == trial.params and retry.state.is_finished()


def test_a_second_ctrl_c_cannot_interrupt_the_orderly_stop(tmp_path: Path) -> None:
    storage, tracking = _stores(tmp_path)
    env = agehpo_env(tmp_path, tracking)
    command = agehpo_command("study", "--storage", storage, "--n-trials", "3", *LONG, *COMMON)
    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "worker.log")
    try:
        _wait_mid_trial(storage, proc)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(10)
    finally:
        stop(proc)
    assert code == 130, proc.output()
    assert "Traceback" not in proc.output()
    check_invariants(storage, tracking, complete_before={}, n_trials=3, finished=False)


def test_a_locked_tracking_store_cannot_hold_the_stop_past_its_deadline(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    db = tmp_path / "mlflow.db"
    tracking = f"sqlite:///{db}"
    env = agehpo_env(tmp_path, tracking, AGEHPO_HEARTBEAT_GRACE="600")
    command = agehpo_command("study", "--storage", storage, "--n-trials", "3", *LONG, *COMMON)
    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "worker.log")
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        connection = sqlite3.connect(db, timeout=30, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold_lock, daemon=True)
    try:
        _wait_mid_trial(storage, proc)
        holder.start()
        assert locked.wait(30)
        os.kill(proc.pid, signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(12)
        took = time.monotonic() - sent
    finally:
        release.set()
        holder.join(60)
        stop(proc)
    assert code == 143, proc.output()
    assert took <= 10, took
    print(f"stop took {took:.2f} s")  # the closing note quotes these (pytest -s)
    assert "did not finish within its deadline" in proc.output()

    # What could not be written is repaired by the next run, at once (the owner is gone).
    code, output = run(
        _shorter(command), env=env, cwd=tmp_path, log=tmp_path / "again.log", timeout=400
    )
    assert code == 0, output[-4000:]
    check_invariants(storage, tracking, complete_before={}, n_trials=3, finished=True)


# -- under mlflow run -------------------------------------------------------------------


@pytest.mark.parametrize("gap_s", [0.01, 0.05])
def test_ctrl_c_under_mlflow_run_leaves_nothing_running(gap_s: float, tmp_path: Path) -> None:
    storage, tracking = _stores(tmp_path)
    env = agehpo_env(tmp_path, tracking)
    command = _mlflow_run_command(f"storage={storage}", "n_trials=3", *LONG_PARAMS, *COMMON_PARAMS)
    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "mlflow.log")
    try:
        trainer = _trainer_of(proc)
        _wait_mid_trial(storage, proc)
        # A terminal's Ctrl-C reaches the whole foreground group; MLflow then sends SIGTERM
        # to its child on its own, and the test sends one more at the gap.
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(gap_s)
        if is_alive(trainer):
            os.kill(trainer, signal.SIGTERM)
        took = _wait_gone([trainer, proc.pid], timeout=10)
        proc.wait(5)
    finally:
        stop(proc)
    assert took <= 10
    print(f"stop took {took:.2f} s")  # the closing note quotes these (pytest -s)
    check_invariants(storage, tracking, complete_before={}, n_trials=3, finished=False)
    parents = [
        r for r in all_runs(MlflowClient(tracking)) if "optuna.trial_number" not in r.data.tags
    ]
    assert parents and all(p.info.status in ("FAILED", "KILLED") for p in parents)


def test_sigterm_to_mlflow_run_stops_its_trainer_too(tmp_path: Path) -> None:
    storage, tracking = _stores(tmp_path)
    env = agehpo_env(tmp_path, tracking)
    common = (f"storage={storage}", *LONG_PARAMS, *COMMON_PARAMS)
    proc = start(
        _mlflow_run_command("n_trials=3", *common), env=env, cwd=tmp_path, log=tmp_path / "a.log"
    )
    try:
        trainer = _trainer_of(proc)
        _wait_mid_trial(storage, proc)
        before = complete(trials(storage))
        os.kill(proc.pid, signal.SIGTERM)  # what docker stop, systemd and timeout send
        assert proc.wait(10) in (-signal.SIGTERM, 143)
        took = _wait_gone([trainer], timeout=10)
    finally:
        stop(proc)
    assert took <= 10
    print(f"stop took {took:.2f} s")  # the closing note quotes these (pytest -s)
    found = check_invariants(storage, tracking, complete_before=before, n_trials=3, finished=False)
    assert len(found) <= 3 + 1, snapshot(found)  # no trial claimed after the signal
    (parent,) = [
        r for r in all_runs(MlflowClient(tracking)) if "optuna.trial_number" not in r.data.tags
    ]
    assert parent.info.status == "KILLED"

    # Rerunning the same command finishes the budget exactly.
    code, output = run(
        _shorter(_mlflow_run_command("n_trials=3", *common)),
        env=env,
        cwd=tmp_path,
        log=tmp_path / "b.log",
        timeout=400,
    )
    assert code == 0, output[-4000:]
    check_invariants(storage, tracking, complete_before=before, n_trials=3, finished=True)


# -- several workers ---------------------------------------------------------------------


def test_a_sigkilled_dask_worker_is_restarted_and_the_budget_stays_exact(
    tmp_path: Path,
) -> None:
    storage, tracking = _stores(tmp_path)
    env = agehpo_env(tmp_path, tracking)
    short = ("--n-samples", "2000", "--img-size", "12", "--batch-size", "16", "--n-epochs", "8")
    command = agehpo_command(
        "study", "--storage", storage, "--n-trials", "8", "--n-workers", "2", *short, *COMMON
    )
    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "client.log")
    try:
        caught = _wait_mid_trial(storage, proc)[0]
        victim = int(str(caught.user_attrs["agehpo.worker"]).rsplit(":", 1)[1])
        assert victim in descendants(proc.pid)  # a worker process of the LocalCluster
        os.kill(victim, signal.SIGKILL)
        code = proc.wait(400)
    finally:
        stop(proc)
    output = proc.output(20000)
    assert code == 0, output
    assert "no trial ran" not in output
    found = check_invariants(storage, tracking, complete_before={}, n_trials=8, finished=True)
    assert found[caught.number].state == TrialState.FAIL, snapshot(found)
    retries = [t for t in found if t.system_attrs.get("failed_trial") == caught.number]
    assert len(retries) == 1 and retries[0].state.is_finished(), snapshot(found)


def test_ctrl_c_stops_the_dask_workers_trials_in_order(tmp_path: Path) -> None:
    storage, tracking = _stores(tmp_path)
    command = agehpo_command(
        "study", "--storage", storage, "--n-trials", "4", "--n-workers", "2", *LONG, *COMMON
    )
    proc = start(command, env=agehpo_env(tmp_path, tracking), cwd=tmp_path, log=tmp_path / "c.log")
    try:
        _wait_mid_trial(storage, proc)
        workers = descendants(proc.pid)
        before = complete(trials(storage))
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 130, proc.output(4000)
        took = max(time.monotonic() - began, _wait_gone(workers, timeout=10))
    finally:
        stop(proc)
    assert took <= 10
    print(f"stop took {took:.2f} s")
    output = proc.output(20000)
    assert "Traceback" not in output, output
    check_invariants(storage, tracking, complete_before=before, n_trials=4, finished=False)


def test_a_torn_journal_between_two_runs_loses_no_trial(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    env = agehpo_env(tmp_path, tracking)
    base = ("--storage", str(journal), *SMALL, *COMMON)

    code, output = run(
        agehpo_command("study", "--n-trials", "2", *base),
        env=env,
        cwd=tmp_path,
        log=tmp_path / "first.log",
        timeout=300,
    )
    assert code == 0, output[-4000:]
    before = snapshot(trials(str(journal)))
    assert [s[0] for s in before.values()] == ["COMPLETE", "COMPLETE"]
    torn = b'{"op_code": 5, "worker_id": "a-dead-worker", "trial_id": 2, "param_na'
    with journal.open("ab") as file:
        file.write(torn)
    damaged = journal.read_bytes()

    code, output = run(
        agehpo_command("study", "--n-trials", "4", *base),
        env=env,
        cwd=tmp_path,
        log=tmp_path / "second.log",
        timeout=300,
    )
    assert code == 0, output[-4000:]
    assert "Repaired" in output and "torn" in output
    backups = list(tmp_path.glob("optuna.journal.torn-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    after = check_invariants(
        str(journal), tracking, complete_before=before, n_trials=4, finished=True
    )
    assert [t.number for t in after] == [0, 1, 2, 3]
    assert journal.read_bytes().endswith(b"\n")
