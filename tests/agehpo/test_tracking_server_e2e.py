"""The issue's acceptance run: `mlflow run . -P sampler=tpe ...`, then read MLflow back.

Once against a real `mlflow server` (HTTP, proxied artifacts) and once against a plain
SQLite store; both must hold the same things (the README, "Looking at the results in MLflow").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from _mlflow_helpers import TrackedStudy, check_tracked_study
from _procs import free_port, mlflow_run, mlflow_server_command, running, wait_http
from mlflow import MlflowClient

from agehpo.data import make_synthetic, write_csv

N_TRIALS = 8
N_EPOCHS = 4


def _acceptance_run(tracking_uri: str, tmp_path: Path) -> tuple[optuna.Study, str]:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    run = mlflow_run(
        tracking_uri,
        tmp_path,
        "sampler=tpe",
        f"n_trials={N_TRIALS}",
        f"n_epochs={N_EPOCHS}",
        "n_samples=800",
        "img_size=12",
        f"storage={storage}",
    )
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-4000:])
    assert f"Number of finished trials: {N_TRIALS}" in run.stdout
    study = optuna.load_study(study_name="age-prediction", storage=storage)
    assert len(study.trials) == N_TRIALS
    return study, run.stdout


def _check(client: MlflowClient, study: optuna.Study, stdout: str, ui_base: str) -> TrackedStudy:
    found = check_tracked_study(
        client,
        study,
        sampler="tpe",
        pruner="median",
        n_epochs=N_EPOCHS,
        output=stdout,
        ui_base=ui_base,
    )
    assert len(found.trials) == N_TRIALS
    # The MLflow Project run is the parent and got the -P values as params.
    params = found.parent.data.params
    assert params["sampler"] == "tpe" and params["img_size"] == "12"
    assert found.parent.data.tags.get("mlflow.project.entryPoint") == "main"
    assert found.champion is not None
    return found


def _predict_in_a_fresh_process(tracking_uri: str, tmp_path: Path) -> pd.DataFrame:
    """`python -m agehpo predict` with the champion, refusing to unpickle anything."""
    faces = tmp_path / "faces.csv"
    write_csv(make_synthetic(20, seed=9), faces)
    out = tmp_path / "predictions.csv"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "agehpo", "predict", "--data", str(faces), "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Age-range accuracy on 20 labelled rows:" in done.stdout
    predictions = pd.read_csv(out)
    assert len(predictions) == 20
    return predictions


@pytest.mark.slow
def test_mlflow_run_against_a_tracking_server(tmp_path: Path) -> None:
    port = free_port()
    server_uri = f"http://127.0.0.1:{port}"
    command = mlflow_server_command(f"sqlite:///{tmp_path}/server.db", tmp_path / "artifacts", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with running(command, env=env, cwd=tmp_path, log=tmp_path / "server.log") as server:
        wait_http(f"{server_uri}/health", server, timeout=60)
        study, stdout = _acceptance_run(server_uri, tmp_path)
        found = _check(MlflowClient(server_uri), study, stdout, ui_base=server_uri)
        assert "mlflow ui --backend-store-uri" not in stdout
        # Artifacts went through the server into its destination, not into ./mlruns.
        assert (tmp_path / "artifacts").is_dir()
        assert not (tmp_path / "mlruns").exists()
        assert found.champion is not None
        assert found.champion.source.startswith("models:/")
        _predict_in_a_fresh_process(server_uri, tmp_path)


@pytest.mark.slow
def test_mlflow_run_against_a_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study, stdout = _acceptance_run(uri, tmp_path)
    client = MlflowClient(uri)
    found = _check(client, study, stdout, ui_base="http://127.0.0.1:5000")
    experiment = client.get_experiment(found.parent.info.experiment_id)
    assert str(tmp_path) in experiment.artifact_location
    assert f"mlflow ui --backend-store-uri {uri}" in stdout
    _predict_in_a_fresh_process(uri, tmp_path)
