"""`agehpo compare`: several samplers, repeated, on one budget; table, plots, verdict, MLflow."""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow.entities import ViewType
from optuna.trial import TrialState, create_trial

from agehpo.compare import CompareResult, run_compare
from agehpo.compare import _report as report
from agehpo.compare._stats import best_so_far, wall_time
from agehpo.config import StudyConfig, parse_samplers, sampler_kwargs_for
from agehpo.data import PreparedData
from agehpo.errors import ConfigError
from agehpo.plugins import PluginError

SAMPLERS = ["random", "tpe"]
REPEATS = 2
N_TRIALS = 4

# -- pure helpers: fast ----------------------------------------------------------------------


def _trial(
    number: int, state: TrialState, value: float | None, start: float = 0.0, end: float = 1.0
) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=state, value=value if state == TrialState.COMPLETE else None)
    trial.number = number
    trial.datetime_start = datetime(2024, 1, 1) + timedelta(seconds=start)
    trial.datetime_complete = datetime(2024, 1, 1) + timedelta(seconds=end)
    return trial


def test_best_so_far_counts_complete_trials_only() -> None:
    trials = [
        _trial(0, TrialState.PRUNED, None),
        _trial(1, TrialState.COMPLETE, 0.5),
        _trial(2, TrialState.FAIL, None),
        _trial(3, TrialState.COMPLETE, 0.4),
        _trial(4, TrialState.COMPLETE, 0.7),
    ]
    assert best_so_far(trials, 5) == [None, 0.5, 0.5, 0.5, 0.7]
    assert best_so_far(trials, 4) == [None, 0.5, 0.5, 0.5]  # trials beyond the budget ignored
    negative = [_trial(0, TrialState.COMPLETE, 0.0), _trial(1, TrialState.COMPLETE, -1.0)]
    assert best_so_far(negative, 2) == [0.0, 0.0]


def test_wall_time_merges_overlapping_trials_and_skips_gaps() -> None:
    trials = [
        _trial(0, TrialState.COMPLETE, 0.1, 0, 10),
        _trial(1, TrialState.COMPLETE, 0.1, 5, 12),  # overlaps: n_jobs > 1
        _trial(2, TrialState.PRUNED, None, 100, 103),  # after a pause: resumed later
    ]
    assert wall_time(trials) == pytest.approx(15.0)


def test_parse_samplers_and_per_sampler_kwargs() -> None:
    assert parse_samplers(" skopt, random ,tpe") == ["skopt", "random", "tpe"]
    with pytest.raises(ConfigError, match="more than once"):
        parse_samplers("tpe,tpe")
    with pytest.raises(ConfigError, match="names no sampler"):
        parse_samplers(" , ")
    per = {"skopt": {"base_estimator": "GP"}, "tpe": {"n_startup_trials": 5}}
    assert sampler_kwargs_for("skopt", per, ["skopt", "tpe", "random"]) == {"base_estimator": "GP"}
    assert sampler_kwargs_for("random", per, ["skopt", "tpe", "random"]) == {}
    assert sampler_kwargs_for("tpe", {"n_startup_trials": 5}, ["tpe"]) == {"n_startup_trials": 5}


def test_unknown_sampler_fails_before_anything_runs(tmp_path: Path) -> None:
    config = StudyConfig(storage=f"sqlite:///{tmp_path}/optuna.db", device="cpu")
    with pytest.raises(PluginError, match="nope"):
        run_compare(config, ["random", "nope"], 1, track=False, out=lambda _: None)
    assert not (tmp_path / "optuna.db").exists()
    with pytest.raises(ConfigError, match="repeats=0"):
        run_compare(config, ["random"], 0, track=False, out=lambda _: None)
    with pytest.raises(ConfigError, match="first_repeat=0"):
        run_compare(config, ["random"], 1, track=False, out=lambda _: None, first_repeat=0)
    with pytest.raises(ConfigError, match="more than once"):
        run_compare(config, ["random", "random"], 1, track=False, out=lambda _: None)


# -- the whole comparison, tracked: one run shared by the checks below -----------------------


@pytest.fixture(scope="module")
def compared(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: PreparedData, _migrated_mlflow_db: Path
) -> tuple[CompareResult, StudyConfig, str, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("compare")
    shutil.copy(_migrated_mlflow_db, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp}/mlflow.db"
    config = StudyConfig(
        n_trials=N_TRIALS,
        n_epochs=2,
        device="cpu",
        storage=f"sqlite:///{tmp}/optuna.db",
        study_name="cmp",
        model_name="cmp-model",
    )
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)  # the SQLite store's ./mlruns goes here, not into the checkout
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        result = run_compare(
            config,
            SAMPLERS,
            REPEATS,
            data=tiny_data,
            artifacts_dir=tmp / "out",
            out=lines.append,
        )
    return result, config, uri, tmp / "out", lines


@pytest.mark.slow
def test_table_matches_the_optuna_studies(compared: tuple) -> None:
    result, config, _, _, _ = compared
    names = {(s.sampler, s.repeat): s.study_name for s in result.stats}
    assert names == {(s, k): f"cmp-{s}-r{k}" for s in SAMPLERS for k in range(1, REPEATS + 1)}
    table = result.table.set_index(["metric", "sampler"])
    for sampler in SAMPLERS:
        per_repeat: dict[str, list[float]] = {}
        for k in range(1, REPEATS + 1):
            study = optuna.load_study(study_name=f"cmp-{sampler}-r{k}", storage=config.storage)
            trials = study.get_trials()
            assert len(trials) == N_TRIALS
            states = [t.state for t in trials]
            complete = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
            for percent in report.PERCENTS:
                first = [v for n, v in complete.items() if n < math.ceil(percent * N_TRIALS / 100)]
                key = (
                    f"best_val_age_accuracy_at_{percent}pct"
                    if percent < 100
                    else "best_val_age_accuracy"
                )
                if first:
                    per_repeat.setdefault(key, []).append(max(v for v in first if v is not None))
            per_repeat.setdefault("n_trials_complete", []).append(len(complete))
            per_repeat.setdefault("n_trials_pruned", []).append(states.count(TrialState.PRUNED))
            per_repeat.setdefault("n_trials_failed", []).append(states.count(TrialState.FAIL))
        for key, values in per_repeat.items():
            row = table.loc[(key, sampler)]
            assert row["n"] == len(values)
            assert row["median"] == pytest.approx(pd.Series(values).median())
            assert row["min"] == pytest.approx(min(values))
            assert row["max"] == pytest.approx(max(values))
        tests = [s.test_age_accuracy for s in result.stats if s.sampler == sampler]
        assert all(t is not None and 0 <= t <= 1 for t in tests)
        assert table.loc[("test_age_accuracy", sampler)]["median"] == pytest.approx(
            pd.Series(tests).median()
        )
        f1s = [s.test_age_macro_f1 for s in result.stats if s.sampler == sampler]
        assert all(f is not None and 0 <= f <= 1 for f in f1s)
        assert table.loc[("test_age_macro_f1", sampler)]["median"] == pytest.approx(
            pd.Series(f1s).median()
        )
    assert "| test age macro-F1 of the best model |" in result.table_markdown


@pytest.mark.slow
def test_mlflow_holds_one_parent_with_a_run_per_study_and_trials_beneath(
    compared: tuple,
) -> None:
    result, _, uri, _, _ = compared
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.run_name == "compare-cmp" and parent.info.status == "FINISHED"
    assert parent.data.params["samplers"] == "random,tpe"
    experiment = parent.info.experiment_id
    runs = client.search_runs([experiment], run_view_type=ViewType.ALL, max_results=1000)
    tops = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in tops] == [result.parent_run_id]
    studies = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert sorted(r.info.run_name for r in studies) == sorted(
        f"cmp-{s}-r{k}" for s in SAMPLERS for k in range(1, REPEATS + 1)
    )
    for run in studies:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["optuna.study_name"] == run.info.run_name
        assert tags["optuna.sampler"] == run.info.run_name.split("-")[1]
        assert tags["compare.repeat"] == run.info.run_name[-1]
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert len(trials) == N_TRIALS
        assert all(t.data.tags["optuna.study_name"] == run.info.run_name for t in trials)
    median = parent.data.metrics["random_best_val_age_accuracy_median"]
    assert median == pytest.approx(
        result.table.set_index(["metric", "sampler"]).loc[
            ("best_val_age_accuracy", "random"), "median"
        ]
    )
    artifacts = {f.path for f in client.list_artifacts(result.parent_run_id)}
    assert artifacts == {
        "compare_table.csv",
        "compare_table.md",
        "compare_repeats.csv",
        "verdict.txt",
        "plots",
    }
    plots = {f.path for f in client.list_artifacts(result.parent_run_id, "plots")}
    assert plots == {f"plots/{n}.{e}" for n in ("convergence", "pruning") for e in ("html", "png")}
    # Unless asked, no study registers a model (nor touches the main job's champion).
    assert client.search_registered_models() == []


@pytest.mark.slow
def test_a_short_budget_warns_that_the_samplers_cannot_differ(compared: tuple) -> None:
    lines = compared[4]
    [warning] = [line for line in lines if line.startswith("Warning: n_trials=4")]
    assert "trials of tpe (10):" in warning and "n_trials > 10" in warning  # random: no start-up


@pytest.mark.slow
def test_asked_to_each_study_registers_its_own_model(
    tmp_path: Path, tiny_data: PreparedData, _migrated_mlflow_db: Path
) -> None:
    shutil.copy(_migrated_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = StudyConfig(
        n_trials=2,
        n_epochs=1,
        device="cpu",
        storage=f"sqlite:///{tmp_path}/optuna.db",
        study_name="reg",
        model_name="reg-model",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        run_compare(config, ["random"], 1, data=tiny_data, out=lambda _: None, register_models=True)
    client = mlflow.MlflowClient(uri)
    assert {m.name for m in client.search_registered_models()} == {"reg-model-random-r1"}
    assert client.get_model_version_by_alias("reg-model-random-r1", "champion").version in (1, "1")


@pytest.mark.slow
def test_verdict_names_the_sampler_with_the_higher_median(compared: tuple) -> None:
    result, _, _, folder, lines = compared
    final = result.table[result.table.metric == "best_val_age_accuracy"].set_index("sampler")
    leader = final["median"].idxmax()
    if final["median"].nunique() == 1:
        assert "tie" in result.verdict
    else:
        assert result.verdict.startswith(f"{leader} is ahead")
    assert (folder / "verdict.txt").read_text().strip() == result.verdict
    assert (folder / "plots" / "convergence.html").stat().st_size > 1000
    assert (folder / "plots" / "pruning.html").stat().st_size > 1000
    assert (folder / "plots" / "convergence.png").stat().st_size > 10_000
    table = pd.read_csv(folder / "compare_table.csv")
    assert set(table.sampler) == set(SAMPLERS)
    assert "Verdict: " + result.verdict in lines
    assert any(
        line.startswith("| measure | random | tpe |") for line in "\n".join(lines).split("\n")
    )


@pytest.mark.slow
def test_rerun_skips_finished_studies(compared: tuple, tiny_data: PreparedData) -> None:
    result, config, _, _, _ = compared
    lines: list[str] = []
    again = run_compare(config, SAMPLERS, REPEATS, track=False, data=tiny_data, out=lines.append)
    assert sum("the budget is met" in line for line in lines) == len(SAMPLERS) * REPEATS
    for before, after in zip(result.stats, again.stats, strict=True):
        assert after.study_name == before.study_name
        assert after.curve == before.curve
        assert (after.complete, after.pruned, after.failed) == (
            before.complete,
            before.pruned,
            before.failed,
        )


@pytest.mark.slow
def test_one_repeat_alone_is_that_repeat_of_the_whole(
    compared: tuple, tiny_data: PreparedData
) -> None:
    result, config, _, _, _ = compared
    lines: list[str] = []
    alone = run_compare(
        config, ["tpe"], 1, track=False, data=tiny_data, out=lines.append, first_repeat=REPEATS
    )
    [whole] = [s for s in result.stats if (s.sampler, s.repeat) == ("tpe", REPEATS)]
    [split] = alone.stats
    assert (split.study_name, split.sampler_seed) == (whole.study_name, whole.sampler_seed)
    assert split.sampler_seed == config.seed + REPEATS - 1
    assert split.curve == whole.curve
    assert sum("the budget is met" in line for line in lines) == 1
