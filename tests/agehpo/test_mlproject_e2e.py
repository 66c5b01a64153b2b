"""The README's main command, end to end: `mlflow run . --env-manager local`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]


def mlflow_run(
    tmp_path: Path, *params: str, entry_point: str = "main"
) -> subprocess.CompletedProcess[str]:
    """Run the project as a user would, with both stores in ``tmp_path``."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "AGEHPO_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "--env-manager",
        "local",
        "-e",
        entry_point,
    ]
    for param in params:
        command += ["-P", param]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_mlflow_run_tunes_reruns_nothing_and_continues(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    common = ("sampler=tpe", "n_epochs=1", "n_samples=600", "img_size=12", f"storage={storage}")
    first = mlflow_run(tmp_path, "n_trials=2", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Number of finished trials: 2" in first.stdout
    assert "Best trial" in first.stdout

    again = mlflow_run(tmp_path, "n_trials=2", *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "budget is met" in again.stdout

    more = mlflow_run(tmp_path, "n_trials=3", *common)
    assert more.returncode == 0, more.stderr[-3000:]
    study = optuna.load_study(study_name="age-prediction", storage=storage)
    assert len(study.trials) == 3
    assert "Trials run now: 1" in more.stdout


@pytest.mark.slow
def test_a_malformed_csv_stops_mlflow_run_with_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("age,ethnicity,gender,img_name,pixels\n25,0,1,a.jpg,1 2 3\n")
    run = mlflow_run(tmp_path, f"data={csv}", "n_trials=1", f"storage=sqlite:///{tmp_path}/o.db")
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("agehpo: error:")]
    assert len(errors) == 1 and "line 2" in errors[0]
