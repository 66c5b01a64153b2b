"""Built with optuna_integration's arguments, MLflowCallback writes optuna_integration's runs.

Each test states one behaviour of the deprecated ``optuna_integration.MLflowCallback`` (run
layout, experiment choice, names, nesting, params, metrics, tags) and checks ours against
it on a real SQLite store; the last ones check that nothing is left RUNNING when the user
never calls ``close()``, which optuna_integration's users never do.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from optuna_mlflow import MLflowCallback


def _objective(trial: optuna.Trial) -> float:
    a = trial.suggest_float("a", -2.0, 2.0)
    b = trial.suggest_int("b", 1, 9)
    trial.set_user_attr("who", "trial-attr")
    return a * a + b


def _two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    a = trial.suggest_float("a", -2.0, 2.0)
    return a, -a


def _runs(client: MlflowClient, name: str = "compat") -> list[Run]:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r}"
    return list(client.search_runs([experiment.experiment_id], order_by=["start_time ASC"]))


def _optimize(cb: MLflowCallback, n: int = 3, name: str = "compat", **kwargs: object) -> None:
    study = optuna.create_study(study_name=name, directions=kwargs.pop("directions", None))
    study.optimize(kwargs.pop("objective", _objective), n_trials=n, callbacks=[cb], **kwargs)  # type: ignore[arg-type]


def test_one_unnested_run_per_trial_named_by_number_in_the_study_experiment(
    tracking_uri: str, client: MlflowClient
) -> None:
    _optimize(MLflowCallback(tracking_uri=tracking_uri))
    runs = _runs(client)
    assert [r.info.run_name for r in runs] == ["0", "1", "2"]
    assert all("mlflow.parentRunId" not in r.data.tags for r in runs)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["optuna.study_uid"] for r in runs} != {""}  # our addition


def test_run_name_from_mlflow_kwargs_names_every_trial_run(
    tracking_uri: str, client: MlflowClient
) -> None:
    _optimize(MLflowCallback(tracking_uri=tracking_uri, mlflow_kwargs={"run_name": "probe"}), n=2)
    assert [r.info.run_name for r in _runs(client)] == ["probe", "probe"]


def test_experiment_choice_without_create_experiment(
    tracking_uri: str, client: MlflowClient
) -> None:
    # No experiment set: MLflow's Default experiment.
    _optimize(MLflowCallback(tracking_uri=tracking_uri, create_experiment=False), n=2)
    assert len(client.search_runs(["0"])) == 2
    assert client.get_experiment_by_name("compat") is None
    # The experiment set with mlflow.set_experiment.
    mlflow.set_experiment("chosen")
    _optimize(MLflowCallback(tracking_uri=tracking_uri, create_experiment=False), n=2)
    assert len(_runs(client, "chosen")) == 2
    # An explicit experiment_id wins.
    exp = client.create_experiment("by-id")
    kwargs = {"experiment_id": exp}
    _optimize(MLflowCallback(tracking_uri=tracking_uri, mlflow_kwargs=kwargs), n=2)
    assert len(_runs(client, "by-id")) == 2
    assert client.get_experiment_by_name("compat") is None


def test_nested_trials_go_under_the_run_active_when_they_end(
    tracking_uri: str, client: MlflowClient
) -> None:
    mlflow.set_experiment("compat")
    cb = MLflowCallback(tracking_uri=tracking_uri, mlflow_kwargs={"nested": True})
    with mlflow.start_run() as outer:
        _optimize(cb)
    runs = _runs(client)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outer.info.run_id]
    assert len(runs) == 4 and len(children) == 3
    assert all(set(r.data.params) == {"a", "b"} for r in children)
    assert all(set(r.data.metrics) == {"value"} for r in children)


def test_an_active_run_without_nested_is_an_error(tracking_uri: str) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri)
    with mlflow.start_run(), pytest.raises(RuntimeError, match=r"Run with UUID \w+ is already"):
        _optimize(cb, n=1)


def test_params_metrics_and_optuna_integration_tags(
    tracking_uri: str, client: MlflowClient
) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, metric_name="score")
    study = optuna.create_study(study_name="compat")
    study.enqueue_trial({"a": 1.5, "b": 4})
    study.optimize(_objective, n_trials=1, callbacks=[cb])
    (run,) = _runs(client)
    trial = study.trials[0]
    assert run.data.params == {"a": "1.5", "b": "4"}
    assert run.data.metrics == {"score": 1.5 * 1.5 + 4}
    tags = run.data.tags
    assert (tags["number"], tags["state"], tags["direction"]) == ("0", "COMPLETE", "MINIMIZE")
    assert tags["datetime_start"] == str(trial.datetime_start)
    assert tags["a_distribution"] == str(trial.distributions["a"])
    assert tags["who"] == "trial-attr"


def test_long_user_attrs_are_cut_to_what_mlflow_accepts(
    tracking_uri: str, client: MlflowClient
) -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("huge", "x" * (MAX_TAG_VAL_LENGTH + 500))
        return 0.0

    _optimize(MLflowCallback(tracking_uri=tracking_uri), n=1, objective=objective)
    (run,) = _runs(client)
    assert len(run.data.tags["huge"]) == MAX_TAG_VAL_LENGTH
    assert run.data.tags["huge"].endswith("...")


@pytest.mark.parametrize("study_attrs", [True, False])
@pytest.mark.parametrize("trial_attrs", [True, False])
def test_user_attr_flags(
    tracking_uri: str, client: MlflowClient, study_attrs: bool, trial_attrs: bool
) -> None:
    cb = MLflowCallback(
        tracking_uri=tracking_uri,
        tag_study_user_attrs=study_attrs,
        tag_trial_user_attrs=trial_attrs,
        mlflow_kwargs={"tags": {"team": 7}},
    )
    study = optuna.create_study(study_name="compat")
    study.set_user_attr("campaign", "spring")
    study.optimize(_objective, n_trials=1, callbacks=[cb])
    (run,) = _runs(client)
    assert ("campaign" in run.data.tags) is study_attrs
    assert ("who" in run.data.tags) is trial_attrs
    assert run.data.tags["team"] == "7"
    # Our own study attrs (the uid) are not repeated as user-attr tags.
    assert not [key for key in run.data.tags if key.startswith("optuna_mlflow.study")]


@pytest.mark.parametrize(
    ("names", "expected"),
    [("obj", {"obj_0", "obj_1"}), (["lo", "hi"], {"lo", "hi"}), (("lo", "hi"), {"lo", "hi"})],
)
def test_several_objectives_are_named_like_optuna_integration(
    tracking_uri: str, client: MlflowClient, names: str | list[str], expected: set[str]
) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, metric_name=names)
    _optimize(cb, n=2, objective=_two_objectives, directions=["minimize", "maximize"])
    assert all(set(r.data.metrics) == expected for r in _runs(client))


def test_wrong_number_of_metric_names_is_a_value_error(tracking_uri: str) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, metric_name=["only-one"])
    with pytest.raises(ValueError, match="one name per objective"):
        _optimize(cb, n=1, objective=_two_objectives, directions=["minimize", "maximize"])


def test_a_trial_without_value_logs_no_value_and_ends_failed(
    tracking_uri: str, client: MlflowClient
) -> None:
    _optimize(MLflowCallback(tracking_uri=tracking_uri), n=1, objective=lambda t: math.nan)
    (run,) = _runs(client)
    assert "value" not in run.data.metrics
    assert run.data.tags["state"] == "FAIL"
    assert run.info.status == "FAILED"  # our addition: optuna_integration says FINISHED


@pytest.mark.parametrize("n_jobs", [1, 3])
def test_track_in_mlflow_logs_into_the_trial_run(
    tracking_uri: str, client: MlflowClient, n_jobs: int
) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri)

    def objective(trial: optuna.Trial) -> float:
        """Doc kept by the decorator."""
        a = trial.suggest_float("a", 0, 1)
        trial.report(a, 0)
        mlflow.log_metric("inside", trial.number)
        return a

    tracked = cb.track_in_mlflow()(objective)
    assert (tracked.__name__, tracked.__doc__) == ("objective", "Doc kept by the decorator.")
    _optimize(cb, n=2 * n_jobs, objective=tracked, n_jobs=n_jobs)
    runs = _runs(client)
    assert len(runs) == 2 * n_jobs
    for run in runs:
        assert run.data.metrics["inside"] == int(run.info.run_name)
        assert run.info.status == "FINISHED"


_UPSTREAM_WAY = textwrap.dedent(
    """
    import sys, threading, optuna
    from optuna_mlflow import MLflowCallback
    uri, mode = sys.argv[1:3]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cb = MLflowCallback(tracking_uri=uri, parent_run=(mode == "parent"))

    @cb.track_in_mlflow()
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        cb.log_step(trial, 0, {"loss": x})
        if mode == "crash" and trial.number == 2:
            raise KeyError("crash")
        return x

    study = optuna.create_study(study_name="exit-" + mode)
    study.optimize(objective, n_trials=3, callbacks=[cb])
    print("threads:", [t.name for t in threading.enumerate() if not t.daemon])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "parent", "crash"])
def test_a_script_that_never_closes_leaves_nothing_running(
    tracking_uri: str, client: MlflowClient, mode: str
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _UPSTREAM_WAY, tracking_uri, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60, "the process did not exit promptly"
    assert done.returncode == (1 if mode == "crash" else 0), done.stderr[-2000:]
    if mode != "crash":
        assert "threads: ['MainThread']" in done.stdout
    runs = _runs(client, f"exit-{mode}")
    assert len(runs) == (4 if mode == "parent" else 3)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    if mode == "crash":
        crashed = next(r for r in runs if r.data.tags["optuna.trial_number"] == "2")
        assert crashed.info.status == "FAILED"
        assert crashed.data.tags["optuna.fail_reason"] == "KeyError: 'crash'"
