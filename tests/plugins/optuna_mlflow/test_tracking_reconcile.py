"""The crash reconciler: what a killed process left in MLflow is repaired from Optuna."""

from __future__ import annotations

import time

import optuna
from mlflow import MlflowClient
from om_helpers import assert_run_matches, history, trial_runs

from optuna_mlflow import MLflowCallback, reconcile_study

TS = optuna.trial.TrialState


def _crashed_process(tracking_uri: str) -> tuple[optuna.Study, MLflowCallback]:
    """A study whose tracking process died: trials 0-1 done, 2 told FAIL without the
    callback, 3 still RUNNING, 4 COMPLETE without any run; the parent left RUNNING."""
    study = optuna.create_study(study_name="crashy", direction="maximize")
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x / 2, 0)
        cb.log_step(trial, 0, {"loss": 1 - x})
        return x

    study.optimize(objective, n_trials=2, callbacks=[cb])
    failed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    failed.report(0.3, 0)
    failed.report(0.4, 1)
    cb.log_step(failed, 0, {"loss": 0.7})
    cb.flush()
    study.tell(failed, state=TS.FAIL)
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    running.report(0.9, 0)
    cb.log_step(running, 0, {"loss": 0.1})
    cb.flush()
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    orphan.report(0.5, 0)
    study.tell(orphan, 0.6)
    return study, cb  # never closed: the process "died"


def test_reconcile_after_a_crash(tracking_uri: str, client: MlflowClient) -> None:
    study, dead = _crashed_process(tracking_uri)
    before = trial_runs(client, dead.experiment_id)
    assert [before[n].info.status for n in (2, 3)] == ["RUNNING", "RUNNING"]
    assert 4 not in before

    new = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    writer = new.session(study).writer
    assert writer.experiment_id == dead.experiment_id

    # The dead parent's heartbeat is fresh: it might still be alive, so nothing is touched.
    fresh = reconcile_study(study, writer, stale_after=600)
    assert (fresh.parents_killed, fresh.runs_rewritten, fresh.runs_killed) == ([], [], [])

    later = time.time() + 3600
    report = reconcile_study(study, writer, stale_after=600, fill_missing=True, now=later)
    assert report.parents_killed == [dead.parent_run_id]
    parent = client.get_run(dead.parent_run_id or "")
    assert parent.info.status == "KILLED"
    assert parent.data.tags["optuna_mlflow.ended_by"] == "reconciler"
    assert client.get_run(new.parent_run_id or "").info.status == "RUNNING"  # current: untouched

    runs = trial_runs(client, dead.experiment_id)
    trials = study.trials
    assert sorted(runs) == [0, 1, 2, 3, 4]
    assert report.runs_rewritten == [runs[2].info.run_id]
    assert report.runs_killed == [runs[3].info.run_id]
    assert report.runs_created == [runs[4].info.run_id]
    for number in (0, 1, 2):
        assert_run_matches(
            client,
            runs[number],
            trials[number],
            study_name="crashy",
            parent_run_id=dead.parent_run_id,
            metric_names=["acc"],
            exact_start=False,
        )
    assert history(client, runs[2], "loss") == {0: 0.7}  # kept what was flushed
    killed = runs[3]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["optuna.trial_state"] == "RUNNING"
    assert killed.data.tags["optuna_mlflow.ended_by"] == "reconciler"
    assert history(client, killed, "acc") == {0: 0.9}
    assert_run_matches(
        client,
        runs[4],
        trials[4],
        study_name="crashy",
        parent_run_id=new.parent_run_id,
        metric_names=["acc"],
    )

    again = reconcile_study(study, writer, fill_missing=True, now=later)
    assert again.changed == 0
    new.close()
    assert client.get_run(new.parent_run_id or "").info.status == "FINISHED"


def test_later_fail_of_a_killed_trial_is_picked_up(tracking_uri: str, client: MlflowClient) -> None:
    study, dead = _crashed_process(tracking_uri)
    new = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    new.reconcile(study, all_other_parents_stale=True)
    assert trial_runs(client, dead.experiment_id)[3].info.status == "KILLED"
    # Optuna's own stale-trial handling fails the trial later; the run follows.
    study._storage.set_trial_state_values(study.trials[3]._trial_id, TS.FAIL)
    report = new.reconcile(study)
    run = trial_runs(client, dead.experiment_id)[3]
    assert report.runs_rewritten == [run.info.run_id]
    assert (run.info.status, run.data.tags["optuna.trial_state"]) == ("FAILED", "FAIL")
    new.close()


def test_runs_of_a_live_parent_are_left_alone(tracking_uri: str, client: MlflowClient) -> None:
    study, dead = _crashed_process(tracking_uri)
    new = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="acc")
    report = new.reconcile(study, stale_after=None, fill_missing=False)
    assert report.changed == 0
    assert client.get_run(dead.parent_run_id or "").info.status == "RUNNING"
    dead.close()  # the "dead" process comes back and closes properly
    runs = trial_runs(client, dead.experiment_id)
    assert [runs[n].info.status for n in (0, 1, 2, 3)] == ["FINISHED"] * 2 + ["FAILED"] * 2
    new.close()


def test_parentless_runs_are_judged_by_their_own_age(
    tracking_uri: str, client: MlflowClient
) -> None:
    study = optuna.create_study(study_name="flat")
    live = MLflowCallback(tracking_uri=tracking_uri)  # optuna_integration's layout
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    live.log_step(trial, 0, {"loss": 1.0})
    run_id = live.run_id_for(trial.number) or ""
    other = MLflowCallback(tracking_uri=tracking_uri)
    # Its process (this one) lives and the run is young: another worker's, left alone.
    assert other.reconcile(study, stale_after=3600).changed == 0
    assert client.get_run(run_id).info.status == "RUNNING"
    report = other.reconcile(study, all_other_parents_stale=True)
    assert report.runs_killed == [run_id]
    assert client.get_run(run_id).info.status == "KILLED"
