"""Study identity: two studies of one name never share a run; legacy runs are adopted once."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from om_helpers import all_runs, make_objective

from optuna_mlflow import MLflowCallback, TrialRunWriter, ensure_study_uid, reconcile_study

UID = "optuna.study_uid"
NUMBER = "optuna.trial_number"


def _journal_study(path: Path, name: str = "same", seed: int = 0) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.create_study(
        study_name=name,
        storage=JournalStorage(JournalFileBackend(str(path))),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        load_if_exists=True,
    )


def _tracked(study: optuna.Study, tracking_uri: str, n_trials: int) -> MLflowCallback:
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as cb:
        study.optimize(make_objective(), n_trials=n_trials, callbacks=[cb], catch=(RuntimeError,))
    return cb


def _by_uid(client: MlflowClient, experiment_id: str) -> dict[str | None, list[int]]:
    found: dict[str | None, list[int]] = {}
    for run in all_runs(client, experiment_id):
        if NUMBER in run.data.tags:
            found.setdefault(run.data.tags.get(UID), []).append(int(run.data.tags[NUMBER]))
    return {uid: sorted(numbers) for uid, numbers in found.items()}


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_ensure_study_uid_is_stored_once_and_idempotent(tmp_path: Path, kind: str) -> None:
    if kind == "journal":
        study = _journal_study(tmp_path / "s.journal")
    else:
        storage = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else None
        study = optuna.create_study(study_name="same", storage=storage)
    uid = ensure_study_uid(study)
    assert re.fullmatch(r"[0-9a-f]{32}", uid)
    assert study.user_attrs["optuna_mlflow.study_uid"] == uid
    assert study.user_attrs["optuna_mlflow.legacy_trials"] == 0  # created with its uid
    assert ensure_study_uid(study) == uid
    if kind != "memory":
        reloaded = optuna.load_study(study_name="same", storage=study._storage)
        assert ensure_study_uid(reloaded) == uid
    other = optuna.create_study(study_name="same")
    assert ensure_study_uid(other) != uid


def test_two_same_name_studies_in_one_experiment_never_share_a_run(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    a = _journal_study(tmp_path / "a.journal", seed=1)
    cb_a = _tracked(a, tracking_uri, 3)
    b = _journal_study(tmp_path / "b.journal", seed=2)  # the same name, another storage
    cb_b = _tracked(b, tracking_uri, 4)
    uid_a, uid_b = ensure_study_uid(a), ensure_study_uid(b)
    assert uid_a != uid_b
    assert cb_a.experiment_id == cb_b.experiment_id  # the experiment named after the study
    experiment = cb_a.experiment_id or ""
    assert _by_uid(client, experiment) == {uid_a: [0, 1, 2], uid_b: [0, 1, 2, 3]}
    parents = [r for r in all_runs(client, experiment) if NUMBER not in r.data.tags]
    assert sorted(r.data.tags[UID] for r in parents) == sorted([uid_a, uid_b])
    assert all(r.info.status != "RUNNING" for r in all_runs(client, experiment))

    # Every lookup of B finds B's runs only; reconcile and fill_missing leave A alone.
    before_a = {r.info.run_id: r.data for r in all_runs(client, experiment) if _uid(r) == uid_a}
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    writer = cb.session(b).writer
    runs_b = writer.find_runs()
    assert sorted(runs_b) == [0, 1, 2, 3]
    assert {_uid(r) for r in runs_b.values()} == {uid_b}
    assert _uid(writer.find_run(0)) == uid_b
    report = reconcile_study(b, writer, all_other_parents_stale=True, fill_missing=True)
    assert report.changed == 0
    cb.close()
    after_a = {r.info.run_id: r.data for r in all_runs(client, experiment) if _uid(r) == uid_a}
    assert {i: (d.tags, d.params, d.metrics) for i, d in after_a.items()} == {
        i: (d.tags, d.params, d.metrics) for i, d in before_a.items()
    }


def _uid(run: object) -> str | None:
    return run.data.tags.get(UID) if run is not None else None  # type: ignore[attr-defined]


def test_fill_missing_writes_the_study_s_own_runs_beside_another_study_s(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    a = _journal_study(tmp_path / "a.journal", seed=1)
    cb_a = _tracked(a, tracking_uri, 3)
    b = _journal_study(tmp_path / "b.journal", seed=2)
    b.optimize(make_objective(), n_trials=3, catch=(RuntimeError,))  # untracked
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    report = cb.reconcile(b, fill_missing=True)
    cb.close()
    assert len(report.runs_created) == 3
    by_uid = _by_uid(client, cb_a.experiment_id or "")
    assert by_uid == {ensure_study_uid(a): [0, 1, 2], ensure_study_uid(b): [0, 1, 2]}


def test_one_callback_tracking_two_same_name_studies_keeps_them_apart(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    a = _journal_study(tmp_path / "a.journal", seed=1)
    b = _journal_study(tmp_path / "b.journal", seed=2)
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as cb:
        a.optimize(make_objective(), n_trials=2, callbacks=[cb], catch=(RuntimeError,))
        b.optimize(make_objective(), n_trials=2, callbacks=[cb], catch=(RuntimeError,))
        run_a = cb.run_id_for(0, study_uid=ensure_study_uid(a))
        run_b = cb.run_id_for(0, study_uid=ensure_study_uid(b))
    assert run_a is not None and run_b is not None and run_a != run_b
    assert _uid(client.get_run(run_a)) == ensure_study_uid(a)
    assert _uid(client.get_run(run_b)) == ensure_study_uid(b)
    parents = {client.get_run(r).data.tags["mlflow.parentRunId"] for r in (run_a, run_b)}
    assert len(parents) == 2


def _legacy_runs(client: MlflowClient, study: optuna.Study, experiment: str) -> str:
    """What the code before study uids wrote: a parent and trial runs without a uid."""
    parent = client.create_run(
        experiment, run_name=study.study_name, tags={"optuna.study_name": study.study_name}
    ).info.run_id
    writer = TrialRunWriter(client, experiment, study.study_name, parent_run_id=parent)
    for trial in study.trials:
        writer.write(trial, search=False)
    return parent


def test_legacy_runs_are_adopted_once_with_one_warning(
    tracking_uri: str, client: MlflowClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _journal_study(tmp_path / "old.journal", seed=1)
    old.optimize(make_objective(), n_trials=3, catch=(RuntimeError,))
    experiment = client.create_experiment("same")
    legacy_parent = _legacy_runs(client, old, experiment)
    # Another old study of the same name, in the same experiment, with other params.
    other = optuna.create_study(study_name="same", sampler=optuna.samplers.RandomSampler(seed=9))
    other.optimize(make_objective(), n_trials=2, catch=(RuntimeError,))
    _legacy_runs(client, other, experiment)

    caplog.set_level(logging.WARNING, logger="optuna_mlflow")
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as cb:
        cb.reconcile(old, fill_missing=True)
        old.optimize(make_objective(), n_trials=1, callbacks=[cb], catch=(RuntimeError,))
    uid = ensure_study_uid(old)
    assert old.user_attrs["optuna_mlflow.legacy_trials"] == 3
    warnings = [r for r in caplog.records if "adopted" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "adopted 4 MLflow runs" in warnings[0].getMessage()  # 3 trial runs + their parent
    assert client.get_run(legacy_parent).data.tags[UID] == uid
    # No duplicate for the adopted trials; the other study's legacy runs stay untouched.
    assert _by_uid(client, experiment) == {uid: [0, 1, 2, 3], None: [0, 1]}

    caplog.clear()
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as again:
        again.reconcile(old, fill_missing=True)
    assert not [r for r in caplog.records if "adopted" in r.getMessage()]


def test_a_new_study_never_adopts_an_old_study_s_runs(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    old = optuna.create_study(study_name="same", sampler=optuna.samplers.RandomSampler(seed=1))
    old.optimize(make_objective(), n_trials=3, catch=(RuntimeError,))
    experiment = client.create_experiment("same")
    _legacy_runs(client, old, experiment)
    # The user deleted the storage and started over: a study with the same name and the
    # same (enqueued) params, created with its uid.
    new = _journal_study(tmp_path / "new.journal")
    for trial in old.trials:
        new.enqueue_trial(trial.params)
    with MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc") as cb:
        new.optimize(make_objective(), n_trials=3, callbacks=[cb], catch=(RuntimeError,))
    assert _by_uid(client, experiment) == {None: [0, 1, 2], ensure_study_uid(new): [0, 1, 2]}
