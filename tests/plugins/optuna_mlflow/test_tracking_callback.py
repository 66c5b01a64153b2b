"""MLflowCallback with a study parent run (parent_run=True, agehpo's layout): fields,
buffering, hooks, closing, threads, processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from om_helpers import all_runs, assert_run_matches, history, make_objective, trial_runs

from optuna_mlflow import MLflowCallback
from optuna_mlflow._owner import ParentHeartbeat


def _study(name: str = "live", storage: str | None = None) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        direction="maximize",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def test_every_field_of_live_trials(tracking_uri: str, client: MlflowClient) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="val_acc")

    def extra(trial: optuna.Trial, step: int) -> None:
        cb.log_step(trial, step, {"train_loss": 1.0 / (step + 1), "val_loss": step * 0.5})
        mlflow.log_metric("fluent_echo", trial.number, step=step)

    study = _study()
    objective = cb.track_in_mlflow()(make_objective(n_steps=5, extra=extra))
    study.optimize(objective, n_trials=6, callbacks=[cb], catch=(RuntimeError,))
    cb.close()

    exp = client.get_experiment(cb.experiment_id)
    assert exp.name == "live"  # named after the study, as optuna_integration did
    runs = all_runs(client, cb.experiment_id)
    parent = runs[0]
    assert parent.info.run_id == cb.parent_run_id
    assert parent.info.run_name == "live"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.study_name"] == "live"
    assert parent.data.tags["optuna_mlflow.role"] == "parent"
    by_number = trial_runs(client, cb.experiment_id)
    assert len(runs) == 1 + len(study.trials) == 1 + len(by_number)
    for trial in study.trials:
        run = by_number[trial.number]
        assert_run_matches(
            client,
            run,
            trial,
            study_name="live",
            parent_run_id=cb.parent_run_id,
            metric_names=["val_acc"],
            exact_start=False,
        )
        steps = sorted(trial.intermediate_values)
        assert history(client, run, "train_loss") == {s: 1.0 / (s + 1) for s in steps}
        assert history(client, run, "val_loss") == {s: s * 0.5 for s in steps}
        assert history(client, run, "fluent_echo") == {s: trial.number for s in steps}
        assert cb.run_id_for(trial.number) == run.info.run_id
        # optuna_integration's tags, kept for existing dashboards.
        assert run.data.tags["number"] == str(trial.number)
        assert run.data.tags["direction"] == "MAXIMIZE"
        assert run.data.tags["x_distribution"].startswith("FloatDistribution")
        assert run.data.tags["mlflow.user"]
    assert by_number[2].data.tags["optuna.fail_reason"] == "RuntimeError: boom 2"


def test_log_step_is_buffered_then_flushed(tracking_uri: str, client: MlflowClient) -> None:
    seen: list[tuple[str, int]] = []

    def probe(cb: MLflowCallback, trial: optuna.Trial, step: int) -> None:
        cb.log_step(trial, step, {"loss": float(step)})
        run = client.get_run(cb.run_id_for(trial.number) or "")
        seen.append((run.info.status, len(client.get_metric_history(run.info.run_id, "loss"))))

    slow = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, flush_interval=3600)
    _study("buffered").optimize(
        lambda t: [probe(slow, t, s) for s in range(3)] and 1.0, n_trials=1, callbacks=[slow]
    )
    assert seen == [("RUNNING", 0)] * 3  # the run is live at once; metrics wait
    run = trial_runs(client, slow.experiment_id)[0]
    assert history(client, run, "loss") == {0: 0.0, 1: 1.0, 2: 2.0}
    slow.close()

    seen.clear()
    eager = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, flush_interval=0)
    _study("eager").optimize(
        lambda t: [probe(eager, t, s) for s in range(3)] and 1.0, n_trials=1, callbacks=[eager]
    )
    assert seen == [("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3)]
    eager.close()


def test_hooks_run_after_data_and_before_end(tracking_uri: str, client: MlflowClient) -> None:
    calls: list[int] = []

    def hook(study: optuna.Study, trial: optuna.trial.FrozenTrial, run_id: str) -> None:
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING"
        assert run.data.params  # the trial's data is already there
        client.set_tag(run_id, "model", f"model-of-{trial.number}")
        calls.append(trial.number)

    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, trial_end_hooks=[hook])
    objective = cb.track_in_mlflow()(make_objective())
    _study().optimize(objective, n_trials=3, callbacks=[cb], catch=(RuntimeError,))
    cb.close()
    assert calls == [0, 1, 2]
    for number, run in trial_runs(client, cb.experiment_id).items():
        assert run.data.tags["model"] == f"model-of-{number}"
        assert run.info.status in ("FINISHED", "FAILED")


def test_close_after_uncaught_exception(tracking_uri: str, client: MlflowClient) -> None:
    study = _study()
    with (
        pytest.raises(ValueError, match="bad data"),
        MLflowCallback(tracking_uri=tracking_uri, parent_run=True) as cb,
    ):

        def objective(trial: optuna.Trial) -> float:
            trial.suggest_float("x", 0, 1)
            cb.log_step(trial, 0, {"loss": 1.0})
            if trial.number == 1:
                raise ValueError("bad data")
            return 1.0

        study.optimize(objective, n_trials=5, callbacks=[cb])
    runs = all_runs(client, cb.experiment_id)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED", "FAILED"]
    failed = trial_runs(client, cb.experiment_id)[1]
    assert failed.data.tags["optuna.trial_state"] == "FAIL"
    assert history(client, failed, "loss") == {0: 1.0}  # the buffer was flushed


def test_keyboard_interrupt_leaves_nothing_running(tracking_uri: str, client: MlflowClient) -> None:
    study = _study()
    with (
        pytest.raises(KeyboardInterrupt),
        MLflowCallback(tracking_uri=tracking_uri, parent_run=True, flush_interval=3600) as cb,
    ):

        @cb.track_in_mlflow()
        def objective(trial: optuna.Trial) -> float:
            trial.suggest_float("x", 0, 1)
            trial.report(0.5, 0)
            if trial.number == 2:
                raise KeyboardInterrupt
            return 1.0

        study.optimize(objective, n_trials=5, callbacks=[cb])
    runs = all_runs(client, cb.experiment_id)
    assert all(r.info.status != "RUNNING" for r in runs)
    assert runs[0].info.status == "KILLED"  # the parent: the user stopped the study
    interrupted = trial_runs(client, cb.experiment_id)[2]
    assert interrupted.info.status == "FAILED"
    assert interrupted.data.tags["optuna.fail_reason"].startswith("KeyboardInterrupt")
    assert history(client, interrupted, "value") == {0: 0.5}


def test_trial_still_running_at_close(tracking_uri: str, client: MlflowClient) -> None:
    study = _study()
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True)
    trial = study.ask()
    trial.suggest_int("n", 1, 3)
    trial.report(0.1, 0)
    cb.log_step(trial, 0, {"loss": 2.0})
    cb.close()
    run = trial_runs(client, cb.experiment_id)[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["optuna.trial_state"] == "RUNNING"
    assert "process stopped" in run.data.tags["optuna_mlflow.end_reason"]
    assert history(client, run, "loss") == {0: 2.0}
    assert history(client, run, "value") == {0: 0.1}


def test_threads_never_mix_runs(tracking_uri: str, client: MlflowClient) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, flush_interval=0.01)

    @cb.track_in_mlflow()
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for step in range(3):
            trial.report(trial.number + step / 100, step)
            cb.log_step(trial, step, {"echo": trial.number})
            mlflow.log_metric("fluent_echo", trial.number, step=step)
            mlflow.log_param("who", trial.number) if step == 0 else None
        return x

    study = _study()
    study.optimize(objective, n_trials=8, n_jobs=4, callbacks=[cb])
    cb.close()
    runs = trial_runs(client, cb.experiment_id)
    assert sorted(runs) == list(range(8))
    for trial in study.trials:
        run = runs[trial.number]
        assert run.data.params == {"x": str(trial.params["x"]), "who": str(trial.number)}
        assert set(history(client, run, "echo").values()) == {trial.number}
        assert set(history(client, run, "fluent_echo").values()) == {trial.number}
        assert run.info.status == "FINISHED"


def test_parent_is_the_mlflow_project_run(
    tracking_uri: str, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = client.create_experiment("project-exp")
    project = client.create_run(exp, run_name="mlflow-run").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", project)
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True)
    study = _study()
    study.optimize(cb.track_in_mlflow()(make_objective()), n_trials=2, callbacks=[cb])
    cb.close()
    assert cb.parent_run_id == project and cb.experiment_id == exp
    assert client.get_run(project).info.status == "RUNNING"  # MLflow ends its own run
    assert len(trial_runs(client, exp)) == 2
    cb.close("FAILED", end_parent=True)
    assert client.get_run(project).info.status == "FAILED"


def test_explicit_parent_and_experiment_kwargs(tracking_uri: str, client: MlflowClient) -> None:
    exp = client.create_experiment("chosen")
    cb = MLflowCallback(
        tracking_uri=tracking_uri,
        mlflow_kwargs={"experiment_id": exp, "run_name": "my-parent", "tags": {"team": "a"}},
        parent_run=True,
    )
    _study().optimize(make_objective(), n_trials=1, callbacks=[cb])
    cb.close()
    parent = client.get_run(cb.parent_run_id or "")
    assert (parent.info.experiment_id, parent.info.run_name) == (exp, "my-parent")
    assert trial_runs(client, exp)[0].data.tags["team"] == "a"

    given = client.create_run(exp, run_name="given").info.run_id
    cb2 = MLflowCallback(tracking_uri=tracking_uri, parent_run_id=given, heartbeat_interval=0)
    _study("other").optimize(make_objective(), n_trials=1, callbacks=[cb2])
    cb2.close()
    assert client.get_run(given).info.status == "RUNNING"
    assert client.get_run(given).data.tags["optuna_mlflow.heartbeat"]
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{given}'")
    assert [r.data.tags["optuna.study_name"] for r in children] == ["other"]


def _heartbeat_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "optuna-mlflow-heartbeat"}


def test_parent_heartbeat_beats_through_a_silent_trial(
    tracking_uri: str, client: MlflowClient
) -> None:
    cb = MLflowCallback(
        tracking_uri=tracking_uri, parent_run=True, heartbeat_interval=1.0, flush_interval=60.0
    )
    study = _study("silent")
    before = _heartbeat_threads()
    parent = cb.start(study)
    ours = _heartbeat_threads() - before
    assert len(ours) == 1
    beats: list[int] = []

    def beat() -> int:
        return int(client.get_run(parent).data.tags["optuna_mlflow.heartbeat"])

    def silent_objective(trial: optuna.Trial) -> float:
        # Nothing is logged or flushed while this runs: only the thread can beat.
        beats.append(beat())
        time.sleep(2.6)
        beats.append(beat())
        return 0.0

    study.optimize(silent_objective, n_trials=1, callbacks=[cb])
    cb.close()
    assert beats[1] > beats[0]
    assert not [t for t in ours if t.is_alive()]  # close() stopped and joined it


def test_heartbeat_started_and_stopped_from_many_threads_leaves_no_thread() -> None:
    heartbeat = ParentHeartbeat(lambda: None, interval=0.0)
    before = _heartbeat_threads()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(50):
                heartbeat.start()
                heartbeat.stop()
        except BaseException as error:
            errors.append(error)

    churners = [threading.Thread(target=churn) for _ in range(4)]
    for thread in churners:
        thread.start()
    for thread in churners:
        thread.join(timeout=30)
    assert not [t for t in churners if t.is_alive()], "a stop() waits on a thread nobody stops"
    assert errors == []
    heartbeat.stop()
    assert not heartbeat.running
    assert not [t for t in _heartbeat_threads() - before if t.is_alive()]


_WORKER = textwrap.dedent(
    """
    import sys, optuna
    from optuna_mlflow import MLflowCallback
    storage, tracking, parent = sys.argv[1:4]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="shared", storage=storage)
    cb = MLflowCallback(tracking_uri=tracking, parent_run_id=parent)
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for step in range(3):
            trial.report(x + step, step)
            cb.log_step(trial, step, {"loss": x})
        return x
    study.optimize(objective, n_trials=4, callbacks=[cb])
    cb.close()
    """
)


@pytest.mark.slow
def test_worker_processes_write_only_their_own_trials(
    tmp_path: Path, tracking_uri: str, client: MlflowClient
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = _study("shared", storage=storage)
    exp = client.create_experiment("shared")
    parent = client.create_run(exp, run_name="shared").info.run_id
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, storage, tracking_uri, parent])
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = trial_runs(client, exp)  # fails on a trial with two runs
    assert sorted(runs) == [t.number for t in study.trials] == list(range(8))
    for trial in study.trials:
        assert runs[trial.number].data.params == {"x": str(trial.params["x"])}
        assert runs[trial.number].info.status == "FINISHED"
