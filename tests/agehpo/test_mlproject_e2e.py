"""The README's main command, end to end: `mlflow run . --env-manager local`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from _procs import mlflow_run

from agehpo.evaluation import HEAD_CLASSES, metric_key


def _mlflow_run(
    tmp_path: Path, *params: str, entry_point: str = "main"
) -> subprocess.CompletedProcess[str]:
    """Run the project as a user would, with both stores in ``tmp_path``."""
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    return mlflow_run(tracking_uri, tmp_path, *params, entry_point=entry_point, timeout=600)


def _check_report_card(tracking_uri: str, tmp_path: Path) -> None:
    """The project run and the champion carry the report card, and the logged predictions
    reproduce its macro-F1 and confusion matrices."""
    from mlflow import MlflowClient
    from sklearn.metrics import confusion_matrix, f1_score

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    run_id, metrics = parent.info.run_id, parent.data.metrics
    files = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    expected = {f"confusion_{h}.{ext}" for h in HEAD_CLASSES for ext in ("png", "json")}
    assert {f"evaluation/{n}" for n in (*expected, "predictions.csv", "metrics.json")} <= files
    champion = client.get_model_version_by_alias("age-predictor", "champion")
    assert champion.tags["evaluation.run_id"] == run_id
    local = Path(client.download_artifacts(run_id, "evaluation", str(tmp_path / "card")))
    predictions = pd.read_csv(local / "predictions.csv")
    for head, classes in HEAD_CLASSES.items():
        labels = list(range(len(classes)))
        true, pred = predictions[f"{head}_true"], predictions[f"{head}_pred"]
        macro = f1_score(true, pred, labels=labels, average="macro", zero_division=0)
        assert metrics[f"test_{head}_macro_f1"] == pytest.approx(macro)
        assert champion.tags[f"test_{head}_macro_f1"] == f"{macro:.4f}"
        for key in ("balanced_accuracy", "majority_baseline_accuracy"):
            assert champion.tags[f"test_{head}_{key}"] == f"{metrics[f'test_{head}_{key}']:.4f}"
        matrix = json.loads((local / f"confusion_{head}.json").read_text())
        assert matrix["counts"] == confusion_matrix(true, pred, labels=labels).tolist()
        assert matrix["classes"] == list(classes)
        for name in classes:
            assert f"test_{head}_f1_{metric_key(name)}" in metrics


@pytest.mark.slow
def test_mlflow_run_tunes_reruns_nothing_and_continues(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    common = ("sampler=tpe", "n_epochs=1", "n_samples=600", "img_size=12", f"storage={storage}")
    first = _mlflow_run(tmp_path, "n_trials=2", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Number of finished trials: 2" in first.stdout
    assert "Best trial" in first.stdout
    _check_report_card(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)

    again = _mlflow_run(tmp_path, "n_trials=2", *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "budget is met" in again.stdout

    more = _mlflow_run(tmp_path, "n_trials=3", *common)
    assert more.returncode == 0, more.stderr[-3000:]
    study = optuna.load_study(study_name="age-prediction", storage=storage)
    assert len(study.trials) == 3
    assert "Trials run now: 1" in more.stdout


@pytest.mark.slow
def test_a_malformed_csv_stops_mlflow_run_with_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("age,ethnicity,gender,img_name,pixels\n25,0,1,a.jpg,1 2 3\n")
    run = _mlflow_run(tmp_path, f"data={csv}", "n_trials=1", f"storage=sqlite:///{tmp_path}/o.db")
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("agehpo: error:")]
    assert len(errors) == 1 and "line 2" in errors[0]


@pytest.mark.slow
def test_mlflow_run_compare_nests_four_studies_under_one_parent(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run = _mlflow_run(
        tmp_path,
        "samplers=skopt,random",
        "repeats=2",
        "n_trials=6",
        "n_epochs=2",
        "n_samples=600",
        "img_size=12",
        f"storage=sqlite:///{tmp_path}/optuna.db",
        entry_point="compare",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_id = {r.info.run_id: r for r in runs}
    roots = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(roots) == 1
    compare_parent = roots[0]
    studies = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == compare_parent.info.run_id
    ]
    assert sorted(r.info.run_name for r in studies) == [
        "age-prediction-random-r1",
        "age-prediction-random-r2",
        "age-prediction-skopt-r1",
        "age-prediction-skopt-r2",
    ]
    for study_run in studies:
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
        assert len(trials) == 6
        assert all(by_id[t.info.run_id].info.status == "FINISHED" for t in trials)
    artifacts = {a.path for a in client.list_artifacts(compare_parent.info.run_id)}
    plots = {a.path for a in client.list_artifacts(compare_parent.info.run_id, "plots")}
    assert {"compare_table.csv", "compare_table.md", "verdict.txt"} <= artifacts
    assert {"plots/convergence.png", "plots/convergence.html"} <= plots
    assert {"plots/pruning.png", "plots/pruning.html"} <= plots
