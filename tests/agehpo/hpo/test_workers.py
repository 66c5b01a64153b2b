"""Several workers share one study's budget: exactly n_trials trials, one MLflow run each.

Real processes only: ``python -m agehpo study --n-workers N`` (a Dask LocalCluster) on a
journal file, and
separate ``agehpo study`` invocations started at once against a fresh PostgreSQL database
with a real ``mlflow server`` on another fresh PostgreSQL database.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _mlflow_helpers import describe, load_study, split_runs, study_runs
from _pg import fresh_database
from _procs import (
    COMMON,
    SMALL,
    TERMINAL,
    Proc,
    agehpo_command,
    agehpo_env,
    free_port,
    mlflow_server_command,
    run,
    running,
    start,
    stop,
    wait_http,
)
from mlflow.entities import Run

STUDY = "age-prediction"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


def _check_budget_and_runs(
    storage: str, tracking: str, n_trials: int
) -> tuple[list[Run], dict[int, list[Run]]]:
    """Exactly ``n_trials`` finished trials, and exactly one terminal child run for each."""
    trials = load_study(storage, STUDY).get_trials()
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert all(t.state.is_finished() for t in trials), [(t.number, t.state) for t in trials]

    runs = study_runs(tracking, STUDY)
    assert all(r.info.status in TERMINAL for r in runs), describe(runs)
    parents, trial_runs = split_runs(runs)
    assert sorted(trial_runs) == list(range(n_trials)), describe(runs)
    duplicated = {n: describe(v) for n, v in trial_runs.items() if len(v) != 1}
    assert not duplicated, duplicated
    parent_ids = {p.info.run_id for p in parents}
    for trial in trials:
        child = trial_runs[trial.number][0]
        assert child.data.tags.get("mlflow.parentRunId") in parent_ids, describe([child])
        assert child.info.run_name == f"trial-{trial.number}"
        assert child.data.tags["optuna.trial_state"] == trial.state.name
        assert child.info.status == RUN_STATUS[trial.state.name]
    return parents, trial_runs


def _trials_run_now(output: str) -> int:
    found = re.findall(r"Trials run now: (\d+)", output)
    assert len(found) == 1, output[-3000:]
    return int(found[0])


@pytest.mark.slow
def test_local_workers_share_the_budget_and_the_parent_run(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    code, output = run(
        agehpo_command(
            "study", "--n-workers", "3", "--storage", storage, "--n-trials", "6", *SMALL, *COMMON
        ),
        env=agehpo_env(tmp_path, tracking),
        cwd=tmp_path,
        log=tmp_path / "study.log",
        timeout=500,
    )
    assert code == 0, output[-4000:]
    assert "worker(s) exited with status" not in output, output[-4000:]
    parents, trial_runs = _check_budget_and_runs(storage, tracking, 6)
    # One invocation, one parent: the workers nest their trial runs under the launcher's.
    assert len(parents) == 1, describe(parents)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {v[0].data.tags["mlflow.parentRunId"] for v in trial_runs.values()} == {
        parent.info.run_id
    }
    assert parent.data.metrics["n_trials_complete"] == 6
    assert "Number of finished trials: 6" in output
    assert _trials_run_now(output) == 6


def test_sqlite_with_several_workers_is_refused_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    code, output = run(
        agehpo_command(
            "study", "--n-workers", "3", "--storage", f"sqlite:///{db}", "--n-trials", "2", *SMALL
        ),
        env=agehpo_env(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"),
        cwd=tmp_path,
        log=tmp_path / "refused.log",
        timeout=120,
    )
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("agehpo: error:")]
    assert len(errors) == 1, output
    assert "storage=" in errors[0] and "n_workers=3" in errors[0]
    assert "Traceback" not in output
    # Refused before anything was created.
    assert not db.exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_cold_start_on_postgres_three_invocations_at_once(tmp_path: Path) -> None:
    with fresh_database("agehpo_optuna") as storage, fresh_database("agehpo_mlflow") as backend:
        port = free_port()
        server_env = agehpo_env(tmp_path, "")
        server_env.pop("MLFLOW_TRACKING_URI")
        server = mlflow_server_command(backend, tmp_path / "artifacts", port)
        with running(
            server,
            env=server_env,
            cwd=tmp_path,
            log=tmp_path / "server.log",
        ) as mlflow_server:
            tracking = f"http://127.0.0.1:{port}"
            wait_http(f"{tracking}/health", mlflow_server, timeout=180)
            env = agehpo_env(tmp_path, tracking)
            command = agehpo_command(
                "study", "--storage", storage, "--n-trials", "6", *SMALL, *COMMON
            )
            procs: list[Proc] = []
            try:
                # All at once: schema, study and experiment are created by whoever is first.
                for i in range(3):
                    procs.append(
                        start(command, env=env, cwd=tmp_path, log=tmp_path / f"study-{i}.log")
                    )
                codes = [proc.wait(500) for proc in procs]
            finally:
                for proc in procs:
                    stop(proc)
            outputs = [p.output(200_000) for p in procs]
            # Optuna's side first: the budget was shared exactly, whatever else happened.
            trials = load_study(storage, STUDY).get_trials()
            assert sorted(t.number for t in trials) == list(range(6))
            assert all(t.state.is_finished() for t in trials)
            assert codes == [0, 0, 0], "\n\n".join(out[-3000:] for out in outputs)
            parents, trial_runs = _check_budget_and_runs(storage, tracking, 6)
            # Each invocation has its own parent run; every trial run sits under one of them.
            assert len(parents) == 3, describe(parents)
            assert all(p.info.status == "FINISHED" for p in parents), describe(parents)
            experiments = {r.info.experiment_id for v in trial_runs.values() for r in v}
            assert len(experiments | {p.info.experiment_id for p in parents}) == 1
            # The three shared the budget: together they ran each trial once.
            ran = [_trials_run_now(out) for out in outputs]
            assert sum(ran) == 6, ran
