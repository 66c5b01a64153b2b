"""Parity with the deprecated optuna_integration.MLflowCallback on the same trials.

Both callbacks track the same study (fixed params via enqueue_trial, a deterministic
objective) into their own fresh SQLite store; what lands must agree on params, objective
value, trial number, run name, nesting (none), user attrs, the legacy tags, and the metrics
logged inside ``track_in_mlflow``. The only differences are additions, asserted below:

* a FAIL trial's run ends FAILED (optuna_integration: FINISHED), with ``optuna.fail_reason``;
* intermediate values land as the history of the objective metric, and pruned runs get
  ``pruned_at_epoch``; ``optuna.*`` tags are added.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from om_helpers import all_runs, history

from optuna_mlflow import MLflowCallback

PARAMS = [
    {"x": 0.25, "opt": "adam", "n": 2},
    {"x": -0.5, "opt": "sgd", "n": 4},  # pruned
    {"x": 0.75, "opt": "adam", "n": 3},  # fails
    {"x": 0.1, "opt": "sgd", "n": 1},
]


def _run_study(callback: object, study_name: str) -> optuna.Study:
    study = optuna.create_study(study_name=study_name, direction="minimize")
    for params in PARAMS:
        study.enqueue_trial(params)

    @callback.track_in_mlflow()  # type: ignore[attr-defined]
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        opt = trial.suggest_categorical("opt", ["adam", "sgd"])
        n = trial.suggest_int("n", 1, 5)
        trial.set_user_attr("kind", opt)
        for step in range(n):
            mlflow.log_metric("echo", x * step, step=step)
            trial.report(x + step, step)
            if trial.number == 1 and step == 2:
                raise optuna.TrialPruned()
        if trial.number == 2:
            raise RuntimeError("no")
        return x * x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna_integration's deprecation warnings
        study.optimize(objective, n_trials=len(PARAMS), callbacks=[callback], catch=(RuntimeError,))
    return study


def _by_number(runs: list[Run], tag: str) -> dict[int, Run]:
    return {int(r.data.tags[tag]): r for r in runs if tag in r.data.tags}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_same_study_lands_the_same(tmp_path: Path, mlflow_db: Callable[[Path], str]) -> None:
    oi = pytest.importorskip("optuna_integration")
    uris = {}
    for name in ("theirs", "ours"):
        (tmp_path / name).mkdir()
        uris[name] = mlflow_db(tmp_path / name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_cb = oi.MLflowCallback(tracking_uri=uris["theirs"])
    theirs_study = _run_study(theirs_cb, "parity")
    ours_cb = MLflowCallback(tracking_uri=uris["ours"])
    ours_study = _run_study(ours_cb, "parity")

    assert [t.params for t in theirs_study.trials] == [t.params for t in ours_study.trials]
    theirs_client, ours_client = MlflowClient(uris["theirs"]), MlflowClient(uris["ours"])
    theirs = _by_number(all_runs(theirs_client), "number")
    ours_all = all_runs(ours_client)
    ours = _by_number(ours_all, "optuna.trial_number")
    assert sorted(theirs) == sorted(ours) == [0, 1, 2, 3]
    assert len(all_runs(theirs_client)) == len(ours_all) == 4  # no parent run

    for number, trial in enumerate(ours_study.trials):
        t, o = theirs[number], ours[number]
        # The same experiment name, params, objective value, trial number, user attrs.
        assert theirs_client.get_experiment(t.info.experiment_id).name == "parity"
        assert ours_client.get_experiment(o.info.experiment_id).name == "parity"
        assert t.data.params == o.data.params == {k: str(v) for k, v in trial.params.items()}
        if trial.values is not None:  # a FAIL trial has no value (ours: just its curve)
            assert t.data.metrics["value"] == o.data.metrics["value"] == trial.value
        assert t.data.tags["number"] == o.data.tags["number"] == o.data.tags["optuna.trial_number"]
        for key in (
            "state",
            "direction",
            "kind",
            "x_distribution",
            "opt_distribution",
            "n_distribution",
        ):
            assert t.data.tags.get(key) == o.data.tags.get(key), key
        for key in ("datetime_start", "datetime_complete"):  # each study's own times
            assert t.data.tags[key] == str(getattr(theirs_study.trials[number], key))
            assert o.data.tags[key] == str(getattr(trial, key))
        # Metrics logged with mlflow.log_metric inside track_in_mlflow.
        assert history(theirs_client, t, "echo") == history(ours_client, o, "echo")
        assert t.data.metrics["echo"] == o.data.metrics["echo"]
        assert t.info.run_name == o.info.run_name == str(number)
        assert "mlflow.parentRunId" not in t.data.tags and "mlflow.parentRunId" not in o.data.tags
        assert set(t.data.tags) - set(o.data.tags) == set()
        # Additions.
        assert o.data.tags["optuna.trial_state"] == trial.state.name
        assert set(o.data.metrics) - set(t.data.metrics) <= {"value", "pruned_at_epoch"}

    assert [theirs[n].info.status for n in range(4)] == ["FINISHED"] * 4
    assert [ours[n].info.status for n in range(4)] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    assert ours[2].data.tags["optuna.fail_reason"] == "RuntimeError: no"
    assert ours[1].data.metrics["pruned_at_epoch"] == 2
    assert history(ours_client, ours[1], "value") == {0: -0.5, 1: 0.5, 2: 1.5}
