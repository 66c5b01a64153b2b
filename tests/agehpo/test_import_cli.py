"""`agehpo import-study`, the CLI face of optuna_mlflow.import_study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from agehpo.cli import main


def _study(storage: str) -> optuna.Study:
    study = optuna.create_study(study_name="old-work", storage=storage, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for step in (1, 2):
            trial.report(x * step, step)
        return x

    study.optimize(objective, n_trials=3)
    return study


def test_import_study_mirrors_trials_once(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tracking_uri: str,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    storage = f"sqlite:///{tmp_path}/old.db"
    study = _study(storage)
    assert main(["import-study", "--storage", storage]) == 0
    assert "3 new trial runs" in capsys.readouterr().out
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("old-work")
    runs = client.search_runs([experiment.experiment_id])
    trial_runs = {
        r.data.tags["optuna.trial_number"]: r for r in runs if "mlflow.parentRunId" in r.data.tags
    }
    assert sorted(trial_runs) == ["0", "1", "2"]
    for trial in study.trials:
        run = trial_runs[str(trial.number)]
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
    assert main(["import-study", "--storage", storage]) == 0
    assert "0 new trial runs" in capsys.readouterr().out


def test_unknown_study_is_one_line_listing_the_studies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path}/old.db"
    _study(storage)
    assert main(["import-study", "--storage", storage, "--study-name", "nope"]) == 2
    errors = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("agehpo: error:")
    ]
    assert len(errors) == 1 and "nope" in errors[0] and "old-work" in errors[0]


def test_importing_a_second_same_name_study_writes_all_its_trials(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tracking_uri: str,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    _study(a)
    _study(b)  # the same name: the user started over in another file
    assert main(["import-study", "--storage", a]) == 0
    assert "3 new trial runs" in capsys.readouterr().out
    assert main(["import-study", "--storage", b]) == 0
    assert "3 new trial runs" in capsys.readouterr().out
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("old-work")
    runs = client.search_runs([experiment.experiment_id])
    uids = {r.data.tags["optuna.study_uid"] for r in runs}
    assert len(uids) == 2 and len(runs) == 2 * (3 + 1)
    assert main(["import-study", "--storage", b]) == 0
    assert "0 new trial runs" in capsys.readouterr().out


def test_under_mlflow_run_the_wrapper_run_sums_the_import_up_and_tracked_studies_are_skipped(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tracking_uri: str,
) -> None:
    from optuna_mlflow import MLflowCallback

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    client = MlflowClient(tracking_uri)
    storage = f"sqlite:///{tmp_path}/old.db"
    _study(storage)  # never tracked: imported
    live = optuna.create_study(study_name="live", storage=storage, direction="maximize")
    with MLflowCallback(
        tracking_uri, "value", parent_run=True, mlflow_kwargs={"experiment_id": "0"}
    ) as cb:
        live.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2, callbacks=[cb])
    wrapper = client.create_run("0").info.run_id  # what `mlflow run -e import_study` opens
    monkeypatch.setenv("MLFLOW_RUN_ID", wrapper)
    assert main(["import-study", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "Skipped study 'live': its runs are already in experiment 0" in out
    assert "Imported study 'old-work'" in out and "3 new trial runs" in out
    run = client.get_run(wrapper)
    assert run.info.run_name == "import-study" and run.data.params["storage"] == storage
    assert run.data.metrics == {
        "n_studies_imported": 1,
        "n_studies_skipped": 1,
        "n_trial_runs_created": 3,
        "n_trial_runs_completed": 0,
    }
    assert client.get_experiment_by_name("live") is None
