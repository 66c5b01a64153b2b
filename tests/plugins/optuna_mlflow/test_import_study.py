"""import_study: existing Optuna studies -> MLflow, idempotent, incremental, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from om_helpers import all_runs, assert_run_matches, make_objective, trial_runs

from optuna_mlflow import (
    NotAnOptunaStorageError,
    StorageNotFoundError,
    StudyImportError,
    UnknownStudyError,
    import_study,
)

TS = optuna.trial.TrialState


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sqlite_study(path: Path, name: str = "old-study", n_trials: int = 6) -> optuna.Study:
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{path}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=5),
        load_if_exists=True,
    )
    study.set_user_attr("dataset", "synthetic")
    study.optimize(make_objective(n_steps=5), n_trials=n_trials, catch=(RuntimeError,))
    return study


def _check_study(
    client: MlflowClient, study: optuna.Study, metric_names: list[str], experiment: str
) -> str:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = all_runs(client, exp.experiment_id)
    parents = [r for r in runs if "optuna.trial_number" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == study.study_name
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.study_name"] == study.study_name
    assert parent.data.tags["optuna_mlflow.import_source"]
    by_number = trial_runs(client, exp.experiment_id)
    assert sorted(by_number) == [t.number for t in study.trials]
    for trial in study.trials:
        assert_run_matches(
            client,
            by_number[trial.number],
            trial,
            study_name=study.study_name,
            parent_run_id=parent.info.run_id,
            metric_names=metric_names,
        )
    return parent.info.run_id


def test_single_objective_sqlite_file(tmp_path: Path, client: MlflowClient) -> None:
    path = tmp_path / "optuna.db"
    study = _sqlite_study(path)
    assert {t.state for t in study.trials} == {TS.COMPLETE, TS.PRUNED, TS.FAIL}
    before = _sha256(path)
    (report,) = import_study(f"sqlite:///{path}", "old-study", client=client)
    assert _sha256(path) == before  # read through a copy: not a byte changed
    assert (report.created, report.updated, report.unchanged) == (6, 0, 0)
    assert report.upgraded_from is None
    parent = _check_study(client, study, ["value"], "old-study")
    assert parent == report.parent_run_id
    run = client.get_run(parent)
    assert run.data.tags["dataset"] == "synthetic"
    assert run.data.metrics["n_trials_complete"] == 2
    assert run.data.metrics["best_value"] == study.best_value
    assert {a.path for a in client.list_artifacts(parent)} >= {"plots", "trials.csv"}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_metric_names_of_the_study_and_plain_path(tmp_path: Path, client: MlflowClient) -> None:
    path = tmp_path / "named.db"
    study = _sqlite_study(path, "named", n_trials=3)
    study.set_metric_names(["val_age_accuracy"])
    import_study(path, experiment_name="imports", client=client, log_artifacts=False)
    _check_study(client, study, ["val_age_accuracy"], "imports")


def test_multi_objective_with_pruned_and_failed(tmp_path: Path, client: MlflowClient) -> None:
    path = tmp_path / "mo.db"
    study = optuna.create_study(
        study_name="mo", storage=f"sqlite:///{path}", directions=["minimize", "maximize"]
    )
    for i in range(5):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("i", i)
        if i == 2:
            study.tell(trial, state=TS.PRUNED)
        elif i == 4:
            study.tell(trial, state=TS.FAIL)
        else:
            study.tell(trial, [x, 1 - x])
    (report,) = import_study(str(path), client=client)
    assert report.created == 5
    _check_study(client, study, ["values_0", "values_1"], "mo")
    runs = trial_runs(client, report.experiment_id)
    assert set(runs[0].data.metrics) == {"values_0", "values_1"}
    assert runs[0].data.tags["optuna.direction"] == "MINIMIZE,MAXIMIZE"
    assert (runs[2].info.status, runs[4].info.status) == ("FINISHED", "FAILED")


@pytest.mark.slow
def test_reimport_creates_nothing_and_new_trials_are_added(
    tmp_path: Path, client: MlflowClient
) -> None:
    path = tmp_path / "optuna.db"
    study = _sqlite_study(path, n_trials=4)
    first = import_study(path, client=client)[0]
    points = {
        n: len(client.get_metric_history(r.info.run_id, "value"))
        for n, r in trial_runs(client, first.experiment_id).items()
    }
    again = import_study(path, client=client)[0]
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert again.parent_run_id == first.parent_run_id
    assert len(all_runs(client, first.experiment_id)) == 5
    assert points == {
        n: len(client.get_metric_history(r.info.run_id, "value"))
        for n, r in trial_runs(client, first.experiment_id).items()
    }

    study.optimize(make_objective(n_steps=5), n_trials=3, catch=(RuntimeError,))
    running = study.ask()  # unfinished: left for a later import
    more = import_study(path, client=client)[0]
    assert (more.created, more.updated, more.unchanged) == (3, 0, 4)
    assert more.skipped_unfinished == 1
    study.tell(running, 1.0)
    last = import_study(path, client=client)[0]
    assert (last.created, last.unchanged) == (1, 7)
    _check_study(client, study, ["value"], "old-study")


def test_all_studies_and_journal_files(tmp_path: Path, client: MlflowClient) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    log = tmp_path / "studies.log"
    storage = JournalStorage(JournalFileBackend(str(log)))
    studies = []
    for name in ("alpha", "beta"):
        study = optuna.create_study(study_name=name, storage=storage)
        study.optimize(make_objective(n_steps=3), n_trials=3, catch=(RuntimeError,))
        studies.append(study)
    before = _sha256(log)
    reports = import_study(log, client=client, log_artifacts=False)
    assert _sha256(log) == before
    assert [r.study_name for r in reports] == ["alpha", "beta"]
    for study in studies:
        _check_study(client, study, ["value"], study.study_name)


def test_bad_inputs_get_one_clear_line(tmp_path: Path, client: MlflowClient) -> None:
    missing = tmp_path / "nope.db"
    for storage in (missing, f"sqlite:///{missing}"):
        with pytest.raises(StorageNotFoundError, match="not found") as err:
            import_study(storage, client=client)
        assert isinstance(err.value, FileNotFoundError)
        assert not missing.exists()  # and no empty storage was created on the way

    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(NotAnOptunaStorageError, match="not an Optuna storage"):
        import_study(text, client=client)
    mlflow_db = tmp_path / "mlflow.db"  # a SQLite file, but MLflow's
    with pytest.raises(NotAnOptunaStorageError, match="without Optuna's tables"):
        import_study(f"sqlite:///{mlflow_db}", client=client)

    path = tmp_path / "optuna.db"
    _sqlite_study(path, "real", n_trials=1)
    with pytest.raises(UnknownStudyError, match=r"'fake' not found .*available: real") as err:
        import_study(path, "fake", client=client)
    for exc in (err.value,):
        assert isinstance(exc, StudyImportError) and isinstance(exc, ValueError)
        assert "\n" not in str(exc)


FIXTURE = Path(__file__).parent / "fixtures" / "optuna2_study.db"


def test_optuna2_schema_fixture(client: MlflowClient) -> None:
    before = _sha256(FIXTURE)
    (report,) = import_study(FIXTURE, client=client)
    assert _sha256(FIXTURE) == before  # upgraded a temporary copy, never the file
    assert report.upgraded_from == "v2.6.0.a"
    assert (report.study_name, report.created) == ("optuna2-study", 6)
    parent = client.get_run(report.parent_run_id)
    assert parent.data.tags["made_with"] == "2.10.1"
    assert parent.data.tags["optuna.direction"] == "MAXIMIZE"
    runs = trial_runs(client, report.experiment_id)
    expected = {
        0: ("COMPLETE", "FINISHED", 0.1, 2, 3.0),
        1: ("COMPLETE", "FINISHED", 0.2, 3, 5.0),
        2: ("COMPLETE", "FINISHED", 0.3, 4, 7.0),
        3: ("PRUNED", "FINISHED", 0.4, 5, 0.6),
        4: ("COMPLETE", "FINISHED", 0.5, 1, 6.0),
        5: ("FAIL", "FAILED", 0.6, 2, None),
    }
    assert sorted(runs) == sorted(expected)
    for number, (state, status, x, layers, value) in expected.items():
        run = runs[number]
        assert run.data.tags["optuna.trial_state"] == state
        assert run.info.status == status
        assert run.data.params == {"x": str(x), "layers": str(layers)}
        assert run.data.tags["note"] == f"trial {number}"
        n_steps = 3 if state == "PRUNED" else 4
        curve = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "value")}
        if value is not None and state == "COMPLETE":
            curve[n_steps - 1] = round(x + (n_steps - 1) / 10, 4)  # the newest point: value
        assert curve == {s: round(x + s / 10, 4) for s in range(n_steps)}
        if value is not None:
            assert run.data.metrics["value"] == value
    assert runs[3].data.metrics["pruned_at_epoch"] == 2
    again = import_study(f"sqlite:///{FIXTURE}", client=client)[0]
    assert (again.created, again.unchanged) == (0, 6)
    assert _sha256(FIXTURE) == before


def test_old_schema_on_a_server_gets_the_upgrade_command(tmp_path: Path) -> None:
    import shutil

    from optuna_mlflow import OldSchemaError
    from optuna_mlflow._open_storage import _check_schema

    copy = tmp_path / "server-standin.db"
    shutil.copy(FIXTURE, copy)
    with pytest.raises(OldSchemaError, match="optuna storage upgrade --storage sqlite:///"):
        _check_schema(f"sqlite:///{copy}")
    with pytest.raises(
        StudyImportError, match="cannot read Optuna storage postgresql://u:\\*\\*\\*@"
    ):
        _check_schema("postgresql://u:pw@127.0.0.1:1/none?connect_timeout=1")
