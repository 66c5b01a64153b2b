"""Two machines, played on one: a ``dask scheduler`` and two ``dask worker`` processes,
PostgreSQL for Optuna and an ``mlflow server``; ``mlflow run . -P cluster=tcp://...`` shares
the budget exactly between the workers, every trial run nested under the project run."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from _pg import fresh_database
from _procs import (
    agehpo_env,
    free_port,
    mlflow_run,
    mlflow_server_command,
    running,
    wait_for,
    wait_http,
)
from distributed import Client
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
N_TRIALS = 6


def _dask(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args, "--no-dashboard"]


def test_mlflow_run_on_a_remote_cluster_shares_the_budget_between_its_workers(
    tmp_path: Path,
) -> None:
    scheduler_port, server_port = free_port(), free_port()
    cluster, tracking = f"tcp://127.0.0.1:{scheduler_port}", f"http://127.0.0.1:{server_port}"
    env = agehpo_env(tmp_path, tracking)
    server_env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    with (
        fresh_database("agehpo_optuna") as storage,
        fresh_database("agehpo_mlflow") as backend,
        running(
            mlflow_server_command(backend, tmp_path / "artifacts", server_port),
            env=server_env,
            cwd=tmp_path,
            log=tmp_path / "server.log",
        ) as server,
        running(
            _dask("scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port)),
            env=env,
            cwd=tmp_path,
            log=tmp_path / "scheduler.log",
        ) as scheduler,
    ):
        worker = _dask("worker", cluster, "--nthreads", "1", "--host", "127.0.0.1")
        with (
            running(worker, env=env, cwd=tmp_path, log=tmp_path / "w1.log"),
            running(worker, env=env, cwd=tmp_path, log=tmp_path / "w2.log"),
        ):
            wait_http(f"{tracking}/health", server, timeout=180)
            with Client(cluster, timeout=60) as client:
                wait_for(
                    lambda: len(client.scheduler_info()["workers"]) == 2 or None,
                    timeout=120,
                    what="two dask workers",
                    alive=scheduler,
                )
            run = mlflow_run(
                tracking,
                tmp_path,
                f"cluster={cluster}",
                "n_workers=2",
                f"storage={storage}",
                f"n_trials={N_TRIALS}",
                "n_epochs=3",
                "n_samples=1500",
                "img_size=12",
                "batch_size=16",
                "device=cpu",
                "sampler=random",
                "pruner=none",
            )
            assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-4000:])
        trials = optuna.load_study(study_name="age-prediction", storage=storage).get_trials()
        _check(trials, MlflowClient(tracking), run.stdout)


def _check(trials: list[optuna.trial.FrozenTrial], client: MlflowClient, stdout: str) -> None:
    """Exactly N_TRIALS COMPLETE trials, each one FINISHED run under the project run, and
    both workers among the runs' ``agehpo.worker`` tags."""
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (project,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert project.data.tags.get("mlflow.project.entryPoint") == "main"
    trial_runs = [r for r in runs if "optuna.trial_number" in r.data.tags]
    numbers = Counter(int(r.data.tags["optuna.trial_number"]) for r in trial_runs)
    assert numbers == Counter(range(N_TRIALS)), numbers  # each trial once: no duplicates
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {project.info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)  # nothing left RUNNING
    workers = {r.data.tags["agehpo.worker"] for r in trial_runs}
    assert len(workers) == 2, workers  # both dask workers ran trials
    assert f"Number of finished trials: {N_TRIALS}" in stdout
