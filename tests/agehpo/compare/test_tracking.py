"""The compare parent run and the study runs, in a real SQLite MLflow store."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest

from agehpo.compare import _report as report
from agehpo.compare._stats import CompareResult, StudyStats
from agehpo.compare._tracking import CompareRun
from agehpo.config import StudyConfig

CONFIG = StudyConfig(study_name="s", storage="postgresql://u:secret@db/optuna", n_trials=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _migrated_mlflow_db: Path) -> str:
    """One SQLite store for the module; each test uses names of its own."""
    folder = tmp_path_factory.mktemp("mlflow")
    shutil.copy(_migrated_mlflow_db, folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture
def client(store: str, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return mlflow.MlflowClient(store)


def _result(stats: list[StudyStats]) -> CompareResult:
    table = report.build_table(stats)
    return CompareResult(stats, table, report.format_table(table, 4), report.verdict(table))


def test_parent_holds_params_tags_report_and_the_study_runs(
    client: mlflow.MlflowClient, two_repeats: list[StudyStats], tmp_path: Path
) -> None:
    result = _result(two_repeats)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "verdict.txt").write_text(result.verdict)
    with CompareRun(CONFIG, ["a", "b"], 2) as parent:
        with parent.study_run("s-a-r1", "a", 1, 13) as done_id:
            pass
        with pytest.raises(RuntimeError), parent.study_run("s-b-r1", "b", 1, 13) as failed_id:
            raise RuntimeError("boom")
        parent.log_report(result, tmp_path / "report")
    run = client.get_run(parent.run_id)
    assert (run.info.run_name, run.info.status) == ("compare-s", "FINISHED")
    assert client.get_experiment(run.info.experiment_id).name == "s"
    assert run.data.tags["compare.samplers"] == "a,b" and run.data.tags["compare.role"] == "parent"
    assert run.data.tags["compare.verdict"] == result.verdict
    params = run.data.params
    assert (params["samplers"], params["repeats"], params["n_trials"]) == ("a,b", "2", "4")
    assert params["storage"] == "postgresql://u:***@db/optuna"
    assert run.data.metrics["a_best_val_age_accuracy_median"] == pytest.approx(0.675)
    assert run.data.metrics["a_n_trials_complete_max"] == 3
    assert "a_test_age_macro_f1_median" not in run.data.metrics  # no repeat has a value
    assert [f.path for f in client.list_artifacts(parent.run_id)] == ["verdict.txt"]
    assert result.parent_run_id == parent.run_id
    done, failed = client.get_run(done_id), client.get_run(failed_id)
    assert (done.info.status, failed.info.status) == ("FINISHED", "FAILED")
    assert done.data.tags["mlflow.parentRunId"] == parent.run_id
    assert done.data.tags["optuna.study_name"] == done.info.run_name == "s-a-r1"
    tags = failed.data.tags
    assert (tags["optuna.sampler"], tags["compare.repeat"], tags["compare.sampler_seed"]) == (
        "b",
        "1",
        "13",
    )


def test_ctrl_c_ends_the_runs_killed(client: mlflow.MlflowClient) -> None:
    config = replace(CONFIG, study_name="killed")
    with (
        pytest.raises(KeyboardInterrupt),
        CompareRun(config, ["a"], 1) as parent,
        parent.study_run("s-a-r1", "a", 1, 13) as study_id,
    ):
        raise KeyboardInterrupt
    assert client.get_run(parent.run_id).info.status == "KILLED"
    assert client.get_run(study_id).info.status == "KILLED"


def test_mlflow_run_parent_is_adopted_and_left_to_mlflow_run(
    client: mlflow.MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = client.create_experiment("project")
    given = client.create_run(experiment).info.run_id
    client.log_param(given, "n_trials", "4")  # `mlflow run` logged the -P values already
    monkeypatch.setenv("MLFLOW_RUN_ID", given)
    with CompareRun(replace(CONFIG, study_name="adopted"), ["a"], 3) as parent:
        pass
    run = client.get_run(given)
    assert parent.run_id == given and parent.experiment_id == experiment
    assert run.info.status == "RUNNING"
    assert run.data.tags["compare.repeats"] == "3" and run.data.params["repeats"] == "3"
    assert client.get_experiment_by_name("adopted") is None
