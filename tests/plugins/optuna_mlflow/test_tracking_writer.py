"""TrialRunWriter: one Optuna trial -> one MLflow run, every field, idempotently."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient
from om_helpers import assert_run_matches, history, make_objective, trial_runs

from optuna_mlflow import TrialRunWriter, run_status_for
from optuna_mlflow._entities import split_batches


def _study(n_trials: int = 6, n_steps: int = 4) -> optuna.Study:
    study = optuna.create_study(
        study_name="writer", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(make_objective(n_steps), n_trials=n_trials, catch=(RuntimeError,))
    return study


def _writer(client: MlflowClient, study: optuna.Study, **kwargs: object) -> TrialRunWriter:
    exp = client.create_experiment("writer-exp")
    parent = client.create_run(exp, run_name="parent").info.run_id
    return TrialRunWriter(
        client,
        exp,
        study.study_name,
        metric_name="acc",
        parent_run_id=parent,
        directions=study.directions,
        **kwargs,  # type: ignore[arg-type]
    )


def test_status_mapping() -> None:
    TS = optuna.trial.TrialState
    assert run_status_for(TS.COMPLETE) == "FINISHED"
    assert run_status_for(TS.PRUNED) == "FINISHED"  # never KILLED: it would look like a crash
    assert run_status_for(TS.FAIL) == "FAILED"
    assert run_status_for(TS.RUNNING) == "KILLED"


def test_every_field_of_complete_pruned_failed_trials(client: MlflowClient) -> None:
    study = _study()
    writer = _writer(client, study)
    for trial in study.trials:
        writer.write(trial, search=False)
    runs = trial_runs(client, writer.experiment_id)
    states = {t.state.name for t in study.trials}
    assert states == {"COMPLETE", "PRUNED", "FAIL"}
    assert sorted(runs) == [t.number for t in study.trials]
    for trial in study.trials:
        run = runs[trial.number]
        assert_run_matches(
            client,
            run,
            trial,
            study_name="writer",
            parent_run_id=writer.parent_run_id,
            metric_names=["acc"],
        )
        assert run.data.tags["optuna.direction"] == "MAXIMIZE"
        assert run.data.tags["optuna_mlflow.role"] == "trial"
    fail = runs[2]
    assert fail.data.tags["optuna.fail_reason"].startswith("not recorded")


def test_fail_reason_from_system_attrs_or_caller(client: MlflowClient) -> None:
    study = optuna.create_study(study_name="writer")
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", "old optuna said so")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    other = study.ask()
    study.tell(other, state=optuna.trial.TrialState.FAIL)
    writer = _writer(client, study)
    writer.write(study.trials[0], search=False)
    writer.write(study.trials[1], search=False, fail_reason="ValueError: nan loss")
    runs = trial_runs(client, writer.experiment_id)
    assert runs[0].data.tags["optuna.fail_reason"] == "old optuna said so"
    assert runs[1].data.tags["optuna.fail_reason"] == "ValueError: nan loss"
    assert runs[1].info.status == "FAILED"


def test_rewrite_is_idempotent_and_fills_missing(client: MlflowClient) -> None:
    study = _study(n_trials=3, n_steps=6)
    writer = _writer(client, study)
    trial = study.trials[0]
    # A run with half the curve and no params, as a killed process might leave it.
    run_id = writer.create_run(trial.number)
    half = {s: v for s, v in trial.intermediate_values.items() if s < 3}
    partial = optuna.trial.create_trial(
        params={},
        distributions={},
        intermediate_values=half,
        state=optuna.trial.TrialState.RUNNING,
    )
    partial.number = trial.number
    partial.datetime_start = trial.datetime_start
    writer.write(partial, run_id=run_id, terminate=False)
    for _ in range(2):
        assert writer.write(trial) == run_id  # found by tags, not created again
    runs = trial_runs(client, writer.experiment_id)
    assert list(runs) == [0]
    assert_run_matches(
        client,
        runs[0],
        trial,
        study_name="writer",
        parent_run_id=writer.parent_run_id,
        metric_names=["acc"],
        exact_start=False,
    )
    assert writer.is_up_to_date(runs[0], trial)


def test_multi_objective_names(client: MlflowClient) -> None:
    study = optuna.create_study(study_name="mo", directions=["minimize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 2.0), n_trials=2)
    for names, expected in ((["loss", "acc"], ["loss", "acc"]), ("value", ["value_0", "value_1"])):
        exp = client.create_experiment(f"mo-{expected[0]}")
        writer = TrialRunWriter(client, exp, "mo", metric_name=names, directions=study.directions)
        for trial in study.trials:
            writer.write(trial, search=False)
        for number, run in trial_runs(client, exp).items():
            assert run.data.metrics == dict(zip(expected, study.trials[number].values, strict=True))
            assert run.data.tags["optuna.direction"] == "MINIMIZE,MAXIMIZE"
            assert "mlflow.parentRunId" not in run.data.tags
    with pytest.raises(ValueError, match="objectives"):
        TrialRunWriter(client, "0", "mo", metric_name=["only-one"]).metric_names(2)


def test_batches_split_within_mlflow_limits(client: MlflowClient) -> None:
    # 150 params and 1200 intermediate values: more than one request of each kind.
    params = {f"p{i:03d}": float(i) for i in range(150)}
    dists = {k: optuna.distributions.FloatDistribution(0, 1000) for k in params}
    trial = optuna.trial.create_trial(
        params=params,
        distributions=dists,
        value=1.5,
        intermediate_values={s: s / 1000 for s in range(1200)},
        user_attrs={f"u{i}": i for i in range(120)},
    )
    trial.number = 0
    metrics, params_, tags = TrialRunWriter(client, "0", "big")._entities(trial, None, None, None)
    assert (len(metrics), len(params_)) == (1201, 150) and len(tags) > 100
    assert len(split_batches(metrics, params_, tags)) >= 2
    exp = client.create_experiment("big")
    writer = TrialRunWriter(client, exp, "big", directions=[optuna.study.StudyDirection.MINIMIZE])
    writer.write(trial, search=False)
    run = trial_runs(client, exp)[0]
    assert len(run.data.params) == 150
    assert history(client, run, "value", unique=False)[1199] == 1.5
    assert len(client.get_metric_history(run.info.run_id, "value")) == 1201
    assert all(run.data.tags[f"u{i}"] == str(i) for i in range(120))
    assert run.data.tags["optuna.trial_state"] == "COMPLETE"


def test_split_batches_limits_and_final_tags() -> None:
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric("m", 1.0, 0, s) for s in range(2500)]
    params = [Param(f"p{i}", "1") for i in range(250)]
    tags = [RunTag(f"t{i}", "1") for i in range(199)]
    batches = split_batches(metrics, params, tags, final_tags=[RunTag("state", "x")])
    for bm, bp, bt in batches:
        assert len(bm) <= 1000 and len(bp) <= 100 and len(bt) <= 100
        assert len(bm) + len(bp) + len(bt) <= 1000
    assert sum(len(b[0]) for b in batches) == 2500
    assert sum(len(b[1]) for b in batches) == 250
    assert [t.key for t in batches[-1][2]][-1] == "state"
    assert all(t.key != "state" for b in batches[:-1] for t in b[2])
    assert split_batches([], [], []) == []
    assert split_batches([], [], [], final_tags=[RunTag("s", "1")]) == [
        ([], [], [RunTag("s", "1")])
    ]


def test_invalid_param_and_attr_names_are_made_valid(client: MlflowClient) -> None:
    trial = optuna.trial.create_trial(
        params={"w[0]": 1.0},
        distributions={"w[0]": optuna.distributions.FloatDistribution(0, 2)},
        value=1.0,
        user_attrs={"a/../b": "x", "ok": "y"},
    )
    trial.number = 0
    exp = client.create_experiment("names")
    TrialRunWriter(client, exp, "names").write(trial, search=False)
    run = trial_runs(client, exp)[0]
    assert run.data.params == {"w_0_": "1.0"}
    assert run.data.tags["ok"] == "y"
    assert run.info.status == "FINISHED"
