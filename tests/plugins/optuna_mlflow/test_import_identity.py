"""import_study and study uids: same-name studies stay apart, re-imports stay idempotent."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import optuna
from mlflow import MlflowClient
from om_helpers import all_runs, make_objective

from optuna_mlflow import MLflowCallback, ensure_study_uid, import_study

UID = "optuna.study_uid"
NUMBER = "optuna.trial_number"
FIXTURE = Path(__file__).parent / "fixtures" / "optuna2_study.db"


def _journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _study(storage: object, n_trials: int, seed: int, name: str = "same") -> optuna.Study:
    study = optuna.create_study(
        study_name=name,
        storage=storage,  # type: ignore[arg-type]
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
    )
    study.optimize(make_objective(), n_trials=n_trials, catch=(RuntimeError,))
    return study


def _trial_uids(client: MlflowClient, experiment_id: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for run in all_runs(client, experiment_id):
        if NUMBER in run.data.tags:
            found.setdefault(run.data.tags[UID], []).append(int(run.data.tags[NUMBER]))
    return {uid: sorted(numbers) for uid, numbers in found.items()}


def test_importing_b_after_a_writes_all_of_b_s_trials(tmp_path: Path, client: MlflowClient) -> None:
    a_path, b_path = tmp_path / "a.journal", tmp_path / "b.journal"
    _study(_journal(a_path), 3, seed=1)
    _study(_journal(b_path), 4, seed=2)
    before = hashlib.sha256(b_path.read_bytes()).hexdigest()
    (a,) = import_study(a_path, client=client, experiment_name="shared", log_artifacts=False)
    (b,) = import_study(b_path, client=client, experiment_name="shared", log_artifacts=False)
    assert (a.created, b.created, b.unchanged) == (3, 4, 0)
    assert a.study_uid != b.study_uid and a.parent_run_id != b.parent_run_id
    assert hashlib.sha256(b_path.read_bytes()).hexdigest() == before  # read, never written
    assert _trial_uids(client, a.experiment_id) == {
        a.study_uid: [0, 1, 2],
        b.study_uid: [0, 1, 2, 3],
    }
    # Derived uids are deterministic: importing again changes nothing, for either study.
    (b2,) = import_study(b_path, client=client, experiment_name="shared", log_artifacts=False)
    (a2,) = import_study(a_path, client=client, experiment_name="shared", log_artifacts=False)
    assert (b2.study_uid, b2.created, b2.unchanged) == (b.study_uid, 0, 4)
    assert (a2.study_uid, a2.created, a2.unchanged) == (a.study_uid, 0, 3)
    assert len(all_runs(client, a.experiment_id)) == 3 + 4 + 2


def test_a_storage_written_in_place_gets_its_uid_stored(
    tmp_path: Path, client: MlflowClient
) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/live.db")
    study = _study(storage, 2, seed=1)
    (report,) = import_study(storage, client=client, log_artifacts=False)
    assert report.study_uid == study.user_attrs["optuna_mlflow.study_uid"]
    assert report.study_uid == ensure_study_uid(study)


def test_a_study_with_a_uid_is_imported_under_it_and_matches_its_live_runs(
    tracking_uri: str, tmp_path: Path, client: MlflowClient
) -> None:
    path = tmp_path / "tracked.journal"
    study = optuna.create_study(study_name="same", storage=_journal(path), direction="maximize")
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="value") as cb:
        study.optimize(make_objective(), n_trials=3, callbacks=[cb], catch=(RuntimeError,))
    (report,) = import_study(path, client=client, log_artifacts=False)
    assert report.study_uid == ensure_study_uid(study)
    assert (report.created, report.unchanged) == (0, 3)  # the live runs, found by uid
    runs = all_runs(client, cb.experiment_id)
    assert len(runs) == 3 + 2  # the live parent, and the import's own parent
    assert {r.data.tags[UID] for r in runs} == {report.study_uid}


def test_a_study_deleted_and_created_again_at_the_same_path_is_another_study(
    tmp_path: Path, client: MlflowClient
) -> None:
    path = tmp_path / "optuna.db"
    _study(f"sqlite:///{path}", 2, seed=1)
    (first,) = import_study(path, client=client, log_artifacts=False)
    path.unlink()
    _study(f"sqlite:///{path}", 3, seed=2)  # same path, name and study id
    (second,) = import_study(path, client=client, log_artifacts=False)
    assert first.study_uid != second.study_uid
    assert second.created == 3


def test_an_upgraded_copy_derives_the_same_uid_every_time(
    tmp_path: Path, client: MlflowClient
) -> None:
    (first,) = import_study(FIXTURE, client=client, log_artifacts=False)
    (again,) = import_study(FIXTURE, client=client, log_artifacts=False)
    assert first.upgraded_from is not None
    assert again.study_uid == first.study_uid
    assert (again.created, again.unchanged) == (0, 6)
    # A copy of the file elsewhere is another storage: its own uid, its own runs.
    copy = tmp_path / "copy.db"
    shutil.copy(FIXTURE, copy)
    (other,) = import_study(copy, client=client, log_artifacts=False)
    assert other.study_uid != first.study_uid and other.created == 6


def test_runs_imported_before_uids_are_adopted_not_duplicated(
    tmp_path: Path, client: MlflowClient
) -> None:
    path = tmp_path / "old.journal"
    study = _study(_journal(path), 3, seed=1)
    (report,) = import_study(path, client=client, log_artifacts=False)
    # Turn them into what the importer wrote before uids: no uid tag anywhere.
    for run in all_runs(client, report.experiment_id):
        client.delete_tag(run.info.run_id, UID)
    (again,) = import_study(path, client=client, log_artifacts=False)
    assert (again.created, again.unchanged) == (0, 3)
    assert again.parent_run_id == report.parent_run_id
    assert _trial_uids(client, report.experiment_id) == {again.study_uid: [0, 1, 2]}
    assert len(study.trials) == 3


def test_a_study_tracked_live_in_another_experiment_is_skipped_not_duplicated(
    tracking_uri: str, tmp_path: Path, client: MlflowClient
) -> None:
    # What `mlflow run` does: the live runs go to the project's experiment, not one named
    # after the study, where the import would look by default.
    project = client.create_experiment("project")
    path = tmp_path / "tracked.journal"
    study = optuna.create_study(study_name="live", storage=_journal(path), direction="maximize")
    kwargs = {"experiment_id": project}
    with MLflowCallback(tracking_uri, "value", parent_run=True, mlflow_kwargs=kwargs) as cb:
        study.optimize(make_objective(), n_trials=3, callbacks=[cb], catch=(RuntimeError,))
    before = len(all_runs(client, project))
    (report,) = import_study(path, client=client, log_artifacts=False)
    assert report.tracked_elsewhere and report.experiment_id == project
    assert (report.created, report.updated) == (0, 0)
    assert client.get_experiment_by_name("live") is None  # no empty experiment left behind
    assert len(all_runs(client, project)) == before
    # Into the project's experiment it is an ordinary import: the live runs are found by uid.
    (there,) = import_study(path, client=client, experiment_name="project", log_artifacts=False)
    assert not there.tracked_elsewhere and (there.created, there.unchanged) == (0, 3)
