"""A worker that dies (SIGKILL), is stopped (SIGTERM) or leaves a torn journal loses nothing.

Real processes (``python -m agehpo study``), a real journal file for Optuna and a real SQLite
tracking store. Heartbeats are short (AGEHPO_HEARTBEAT_INTERVAL=1, AGEHPO_HEARTBEAT_GRACE=3),
so a dead worker's trial is stale seconds after its death.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pytest
from _mlflow_helpers import describe, load_study, split_runs, study_runs
from _procs import (
    COMMON,
    SMALL,
    TERMINAL,
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

from agehpo.objective import EPOCH_METRIC_NAMES as EPOCH_METRICS

pytestmark = pytest.mark.slow

STUDY = "age-prediction"
HEARTBEAT_ATTR = "agehpo:heartbeat"
# Trials long enough (~0.2 s per epoch, 30 epochs) to be caught mid-trial.
LONG = (
    "--n-samples",
    "2000",
    "--img-size",
    "12",
    "--batch-size",
    "8",
    "--n-epochs",
    "30",
)


def _trials(storage: str) -> list[FrozenTrial]:
    try:
        return load_study(storage, STUDY).get_trials()
    except (KeyError, ValueError, OSError):
        return []  # the study does not exist yet


def _snapshot(trials: list[FrozenTrial]) -> dict[int, tuple[str, float | None, dict[str, object]]]:
    return {t.number: (t.state.name, t.value, t.params) for t in trials}


def test_a_sigkilled_worker_is_recovered_by_the_next_run(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    env = agehpo_env(tmp_path, tracking)
    command = agehpo_command("study", "--storage", storage, "--n-trials", "3", *LONG, *COMMON)

    first = start(command, env=env, cwd=tmp_path, log=tmp_path / "first.log")
    try:

        def one_done_one_running() -> list[FrozenTrial] | None:
            trials = _trials(storage)
            done = any(t.state == TrialState.COMPLETE for t in trials)
            running = any(
                t.state == TrialState.RUNNING and len(t.intermediate_values) >= 1 for t in trials
            )
            return trials if done and running else None

        wait_for(
            one_done_one_running,
            timeout=240,
            interval=0.2,
            what="a COMPLETE trial and a RUNNING one that reported",
            alive=first,
        )
        kill_group(first)  # SIGKILL: no handler, no flush, no goodbye
    finally:
        stop(first)
    assert first.popen.returncode == -signal.SIGKILL

    before = _trials(storage)
    running = [t for t in before if t.state == TrialState.RUNNING]
    assert len(running) == 1, _snapshot(before)
    killed = running[0]
    assert killed.intermediate_values, "the killed trial had reported nothing"
    complete_before = {
        n: s for n, s in _snapshot(before).items() if s[0] == TrialState.COMPLETE.name
    }
    assert complete_before
    runs = study_runs(tracking, STUDY)
    assert any(r.info.status == "RUNNING" for r in runs), "the dead worker left nothing open?"

    # Restart once the dead trial's heartbeat is older than the grace period (3 s), so the
    # restarted worker fails and retries it before claiming new trials.
    last_beat = float(killed.system_attrs.get(HEARTBEAT_ATTR, time.time()))
    time.sleep(max(0.0, last_beat + 4.5 - time.time()))
    code, output = run(command, env=env, cwd=tmp_path, log=tmp_path / "second.log", timeout=400)
    assert code == 0, output[-4000:]

    after = load_study(storage, STUDY).get_trials()
    by_number = {t.number: t for t in after}
    assert by_number[killed.number].state == TrialState.FAIL
    retries = [t for t in after if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, _snapshot(after)
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.system_attrs["retry_history"] == [killed.number]
    # The budget is met exactly and nothing is left running or waiting.
    assert len(after) == 3
    assert [t.number for t in after] == [0, 1, 2]
    assert all(t.state.is_finished() for t in after), _snapshot(after)
    # No COMPLETE trial from before the kill was lost or changed.
    snapshot_after = _snapshot(after)
    for number, state in complete_before.items():
        assert snapshot_after[number] == state

    runs = study_runs(tracking, STUDY)
    parents, trial_runs = split_runs(runs)
    assert len(parents) == 2, describe(parents)
    assert sorted(trial_runs) == [0, 1, 2], describe(runs)
    assert all(r.info.status in TERMINAL for r in runs), describe(runs)
    assert sorted(trial_runs) == [0, 1, 2], describe(runs)
    assert all(len(v) == 1 for v in trial_runs.values()), describe(runs)
    dead_run = trial_runs[killed.number][0]
    assert dead_run.info.status in ("KILLED", "FAILED"), describe([dead_run])
    assert trial_runs[retry.number][0].info.status == "FINISHED"
    for number in complete_before:
        assert trial_runs[number][0].info.status == "FINISHED"
    dead_parent_id = dead_run.data.tags["mlflow.parentRunId"]
    dead_parent = next(p for p in parents if p.info.run_id == dead_parent_id)
    assert dead_parent.info.status in ("KILLED", "FAILED")
    live_parent = next(p for p in parents if p.info.run_id != dead_parent_id)
    assert live_parent.info.status == "FINISHED"
    assert trial_runs[retry.number][0].data.tags["mlflow.parentRunId"] == live_parent.info.run_id


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_sigterm_fails_the_running_trials_flushes_their_metrics_and_exits_143(
    n_jobs: int, tmp_path: Path
) -> None:
    storage = str(tmp_path / "optuna.journal")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    env = agehpo_env(tmp_path, tracking)
    command = agehpo_command(
        "study", "--storage", storage, "--n-trials", "4", "--n-jobs", str(n_jobs), *LONG, *COMMON
    )

    proc = start(command, env=env, cwd=tmp_path, log=tmp_path / "worker.log")
    try:

        def mid_trial() -> list[FrozenTrial] | None:
            trials = _trials(storage)
            busy = [
                t
                for t in trials
                if t.state == TrialState.RUNNING and 2 <= len(t.intermediate_values) <= 25
            ]
            return busy or None

        wait_for(mid_trial, timeout=240, interval=0.2, what="a trial mid-way", alive=proc)
        os.kill(proc.pid, signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(10)
        took = time.monotonic() - sent
    finally:
        stop(proc)
    output = proc.output()
    assert code == 143, output
    assert took <= 10
    assert "terminated (SIGTERM)" in output

    # Every trial that was running fails; with threads, none is started after the signal.
    trials = load_study(storage, STUDY).get_trials()
    assert not [t for t in trials if not t.state.is_finished()], _snapshot(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == n_jobs == len(trials), _snapshot(trials)
    assert max(len(t.intermediate_values) for t in failed) >= 2
    runs = study_runs(tracking, STUDY)
    assert all(r.info.status in TERMINAL for r in runs), describe(runs)
    parents, trial_runs = split_runs(runs)
    assert len(parents) == 1 and parents[0].info.status in ("KILLED", "FAILED"), describe(runs)
    assert all(len(v) == 1 for v in trial_runs.values()), describe(runs)
    client = MlflowClient(tracking)
    for trial in failed:
        assert "Terminated" in str(trial.user_attrs.get("fail_reason", ""))
        k = len(trial.intermediate_values)
        assert sorted(trial.intermediate_values) == list(range(1, k + 1))
        if k == 0:
            continue  # a thread stopped in its first epoch: no run was needed yet
        assert trial.number in trial_runs, describe(runs)
        trial_run = trial_runs[trial.number][0]
        assert trial_run.info.status in ("FAILED", "KILLED")
        assert trial_run.data.tags["optuna.trial_state"] == "FAIL"
        for key in EPOCH_METRICS:
            history = client.get_metric_history(trial_run.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), (key, steps)
            # Steps 1..k were reported to Optuna; epoch k+1 may have been logged just
            # before the trial stopped (metrics are logged before the report), never more.
            assert set(range(1, k + 1)) <= set(steps) <= set(range(1, k + 2)), (key, steps, k)
        accuracy = {
            m.step: m.value
            for m in client.get_metric_history(trial_run.info.run_id, "val_age_accuracy")
        }
        for step, value in trial.intermediate_values.items():
            assert math.isclose(accuracy[step], value, rel_tol=1e-9), step


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
    before = _snapshot(load_study(str(journal), STUDY).get_trials())
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

    after = load_study(str(journal), STUDY).get_trials()
    assert [t.number for t in after] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in after)
    snapshot = _snapshot(after)
    assert {n: snapshot[n] for n in before} == before
    assert journal.read_bytes().endswith(b"\n")

    runs = study_runs(tracking, STUDY)
    parents, trial_runs = split_runs(runs)
    assert len(parents) == 2 and sorted(trial_runs) == [0, 1, 2, 3], describe(runs)
    assert all(len(v) == 1 and v[0].info.status == "FINISHED" for v in trial_runs.values())
