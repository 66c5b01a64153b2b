"""Helpers for the optuna_mlflow tests: read back what landed, build small studies."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run

KINDS = ("complete", "prune", "fail")


def make_objective(n_steps: int = 4, extra: Callable[[optuna.Trial, int], None] | None = None):
    """Objective whose fate is fixed by the trial number: COMPLETE, PRUNED, FAIL, ...

    Args:
        n_steps: Intermediate values reported per trial.
        extra: Called after each report with (trial, step), e.g. to log_step.

    Returns:
        The objective (raises RuntimeError on FAIL trials; pass catch=(RuntimeError,)).
    """

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        n = trial.suggest_int("n", 1, 5)
        opt = trial.suggest_categorical("opt", ["adam", "sgd"])
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.set_user_attr("note", f"trial {trial.number}")
        kind = KINDS[trial.number % 3]
        for step in range(n_steps):
            trial.report(x + n * step + lr, step)
            if extra is not None:
                extra(trial, step)
            if kind == "prune" and step == n_steps // 2:
                raise optuna.TrialPruned()
        if kind == "fail":
            raise RuntimeError(f"boom {trial.number}")
        # Deliberately not the last intermediate value: the run's latest value must be it.
        return x * 10 + (1 if opt == "adam" else 0)

    return objective


def all_runs(client: MlflowClient, experiment_id: str | None = None) -> list[Run]:
    """Every run in the store (or in one experiment), oldest first."""
    ids = (
        [experiment_id]
        if experiment_id is not None
        else [e.experiment_id for e in client.search_experiments()]
    )
    return list(client.search_runs(ids, order_by=["attributes.start_time ASC"], max_results=5000))


def trial_runs(client: MlflowClient, experiment_id: str | None = None) -> dict[int, Run]:
    """Trial runs by trial number (fails on duplicates)."""
    found: dict[int, Run] = {}
    for run in all_runs(client, experiment_id):
        number = run.data.tags.get("optuna.trial_number")
        if number is not None:
            assert int(number) not in found, f"two runs for trial {number}"
            found[int(number)] = run
    return found


def history(client: MlflowClient, run: Run, key: str, unique: bool = True) -> dict[int, float]:
    """Metric history of ``key`` as step -> value (the newest point wins at a step).

    Args:
        client: Tracking client.
        run: The run.
        key: Metric key.
        unique: Fail when a step has several points.
    """
    points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.timestamp)
    steps = [m.step for m in points]
    if unique:
        assert len(steps) == len(set(steps)), f"{key}: duplicate steps {sorted(steps)}"
    return {m.step: m.value for m in points}


STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


def ms(moment) -> int:  # type: ignore[no-untyped-def]
    return int(moment.timestamp() * 1000)


def assert_run_matches(
    client: MlflowClient,
    run: Run,
    trial: optuna.trial.FrozenTrial,
    *,
    study_name: str,
    parent_run_id: str | None,
    metric_names: list[str],
    exact_start: bool = True,
) -> None:
    """Check every field of a trial run against the Optuna trial it mirrors."""
    tags = run.data.tags
    assert run.info.run_name == f"trial-{trial.number}"
    assert tags["optuna.study_name"] == study_name
    assert tags["optuna.trial_number"] == str(trial.number)
    assert tags["optuna.trial_state"] == trial.state.name
    assert tags.get("mlflow.parentRunId") == parent_run_id
    assert run.info.status == STATUS[trial.state.name]
    assert run.info.end_time == ms(trial.datetime_complete)
    if exact_start:
        assert run.info.start_time == ms(trial.datetime_start)
    else:
        assert abs(run.info.start_time - ms(trial.datetime_start)) < 2000
    assert run.data.params == {k: str(v) for k, v in trial.params.items()}
    for key, value in trial.user_attrs.items():
        assert tags[key] == str(value)
    if trial.state.name == "FAIL":
        assert tags["optuna.fail_reason"]
    else:
        assert "optuna.fail_reason" not in tags
    # Objective value(s): the latest value of each metric.
    if trial.values is not None:
        for name, value in zip(metric_names, trial.values, strict=True):
            assert run.data.metrics[name] == value
    # Intermediate values: the history of the first metric, step = reported step, plus the
    # trial's value at the last step when it differs from the last intermediate value.
    if trial.intermediate_values:
        points = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric_names[0])
        )
        expected = sorted(trial.intermediate_values.items())
        last = max(trial.intermediate_values)
        if trial.values is not None and trial.values[0] != trial.intermediate_values[last]:
            expected = sorted([*expected, (last, trial.values[0])])
        assert points == expected
    else:
        assert metric_names[0] not in run.data.metrics or trial.values is not None
    if trial.state.name == "PRUNED" and trial.intermediate_values:
        assert run.data.metrics["pruned_at_epoch"] == max(trial.intermediate_values)
    else:
        assert "pruned_at_epoch" not in run.data.metrics
