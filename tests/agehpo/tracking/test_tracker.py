"""A tracked study in a real SQLite MLflow store: runs, metrics, artifacts, the champion."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from _mlflow_helpers import (
    PARENT_RUN_ID,
    all_runs,
    check_tracked_study,
    default_store,
    registered_versions,
)
from mlflow import MlflowClient

from agehpo.cli import format_summary, main
from agehpo.config import StudyConfig
from agehpo.data import PreparedData, age_to_bin, make_synthetic, write_csv
from agehpo.hpo.best import BestModelKeeper
from agehpo.objective import Objective
from agehpo.pyfunc import PARAMS_FILE, PROBABILITY_COLUMNS
from agehpo.study import StudyResult, run_study
from agehpo.tracking.tracker import StudyTracker
from optuna_mlflow import redact_url

CHAMPION = "models:/age-predictor@champion"
OUTPUT_COLUMNS = ["age_bin", "age_range", "ethnicity", "gender", *PROBABILITY_COLUMNS]


def _config(root: Path, **overrides: object) -> StudyConfig:
    base = StudyConfig(
        n_trials=2,
        n_epochs=2,
        storage=f"sqlite:///{root}/optuna.db",
        sampler="random",
        pruner="median",
        device="cpu",
        img_size=12,  # the size tiny_data was prepared at
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Tracked:
    root: Path
    config: StudyConfig
    result: StudyResult
    client: MlflowClient


@pytest.fixture(scope="module")
def tracked(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> Iterator[Tracked]:
    """One tracked study of 2 trials, shared by the read-only tests of this module.

    The config says 24 px while tiny_data is 12: the data wins, so the champion must say 12."""
    root = tmp_path_factory.mktemp("tracked")
    config = _config(root, img_size=24)
    with (
        pytest.MonkeyPatch.context() as patch,
        default_store(mlflow_db(root), patch, root) as client,
    ):
        result = run_study(config, track=True, data=tiny_data, out=lambda _: None)
        yield Tracked(root, config, result, client)


def _study(config: StudyConfig) -> optuna.Study:
    return optuna.load_study(study_name=config.study_name, storage=config.storage)


# -- what lands in MLflow -----------------------------------------------------------------


def test_every_trial_is_a_nested_run_and_the_parent_sums_the_study_up(tracked: Tracked) -> None:
    study = _study(tracked.config)
    assert len(study.trials) == 2
    summary = format_summary(tracked.result, tracked.config)
    found = check_tracked_study(
        tracked.client,
        study,
        sampler="random",
        pruner="median",
        n_epochs=2,
        output=summary,
        ui_base="http://127.0.0.1:5000",
    )
    assert f"mlflow ui --backend-store-uri sqlite:///{tracked.root}/mlflow.db" in summary
    assert f"Registered {CHAMPION}" in summary
    # Artifacts stay in the test's folder (a SQLite store's default is ./mlruns).
    experiment = tracked.client.get_experiment(found.parent.info.experiment_id)
    assert str(tracked.root) in experiment.artifact_location
    assert found.champion is not None
    assert tracked.result.test is not None
    assert found.champion.tags["test_age_accuracy"] == f"{tracked.result.test.age_accuracy:.4f}"
    assert found.parent.data.metrics["test_age_accuracy"] == pytest.approx(
        tracked.result.test.age_accuracy
    )


def test_the_parent_run_records_the_config_and_the_dataset(
    tracked: Tracked, tiny_data: PreparedData
) -> None:
    parents = [r for r in all_runs(tracked.client) if PARENT_RUN_ID not in r.data.tags]
    assert len(parents) == 1
    parent = tracked.client.get_run(parents[0].info.run_id)
    expected = {
        name: json.dumps(value) if isinstance(value, dict) else str(value)
        for name, value in dataclasses.asdict(tracked.config).items()
    }
    assert parent.data.params == expected
    assert parent.data.params["storage"] == tracked.config.storage
    assert parent.data.tags["optuna.study_name"] == tracked.config.study_name
    [dataset] = parent.inputs.dataset_inputs
    assert dataset.dataset.name == "synthetic-faces"
    assert dataset.dataset.digest == tiny_data.digest
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"


def test_the_champion_loads_by_alias_and_predicts_like_its_trial(
    tracked: Tracked, tiny_data: PreparedData
) -> None:
    champion = tracked.client.get_model_version_by_alias("age-predictor", "champion")
    assert champion.source.startswith("models:/")
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tracked.root / "dl")))
    params = json.loads(next(local.rglob(PARAMS_FILE)).read_text())
    best = _study(tracked.config).best_trial
    assert params == {**best.params, "img_size": 12}
    model = mlflow.pyfunc.load_model(CHAMPION)
    faces = make_synthetic(40, seed=11)
    frame = pd.DataFrame({"pixels": [" ".join(map(str, row)) for row in faces.pixels]})
    predictions = model.predict(frame)
    assert list(predictions.columns) == OUTPUT_COLUMNS
    assert len(predictions) == 40
    np.testing.assert_allclose(predictions[PROBABILITY_COLUMNS].sum(axis=1), 1.0, atol=1e-5)


# A fresh interpreter in which the installed agehpo is hidden: agehpo may only be imported
# from a sys.path entry inside the downloaded model, which MLflow adds for its code_paths.
_LOAD_WITHOUT_AGEHPO = r"""
import importlib.machinery, json, sys
import mlflow, pandas as pd

local = sys.argv[1]

class OnlyTheModelsCopy:
    def find_spec(self, name, path=None, target=None):
        if name != "agehpo":
            return None
        inside = [p for p in sys.path if p.startswith(local)]
        spec = importlib.machinery.PathFinder.find_spec(name, inside)
        if spec is None:
            raise ModuleNotFoundError("agehpo is hidden in this test", name=name)
        return spec

sys.meta_path.insert(0, OnlyTheModelsCopy())
try:
    import agehpo
    raise SystemExit("agehpo was importable before the model was loaded")
except ModuleNotFoundError:
    pass
model = mlflow.pyfunc.load_model(local)
frame = pd.DataFrame({"pixels": [" ".join(["128"] * 2304), " ".join(["30"] * 2304)]})
predictions = model.predict(frame)
print(json.dumps({"agehpo": sys.modules["agehpo"].__file__, "rows": len(predictions)}))
"""


@pytest.mark.slow
def test_the_champion_carries_its_code_and_loads_where_agehpo_is_not_installed(
    tracked: Tracked,
) -> None:
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tracked.root / "c")))
    requirements = (local / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in requirements}
    assert {"torch", "safetensors", "pandas", "numpy", "mlflow"} <= names
    assert "agehpo" not in names
    assert (local / "code" / "agehpo" / "pyfunc.py").is_file()
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_AGEHPO, str(local)],
        env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"},
        cwd=tracked.root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["rows"] == 2
    assert Path(loaded["agehpo"]).is_relative_to(local / "code")


@pytest.mark.slow
def test_rerunning_a_finished_study_adds_no_trial_run_and_no_model_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    config = _config(tmp_path, n_trials=2, n_epochs=1)
    with default_store(mlflow_db(tmp_path), monkeypatch, tmp_path) as client:
        first = run_study(config, track=True, data=tiny_data, out=lambda _: None)
        trial_runs = {
            r.info.run_id for r in all_runs(client) if "optuna.trial_number" in r.data.tags
        }
        versions = registered_versions(client, "age-predictor")
        assert len(trial_runs) == 2 and len(versions) == 1

        lines: list[str] = []
        again = run_study(config, track=True, data=tiny_data, out=lines.append)
        assert again.ran == []
        assert any("budget is met" in line for line in lines)
        after = {r.info.run_id for r in all_runs(client) if "optuna.trial_number" in r.data.tags}
        assert after == trial_runs
        assert [v.version for v in registered_versions(client, "age-predictor")] == [
            versions[0].version
        ]
        champion = client.get_model_version_by_alias("age-predictor", "champion")
        assert champion.version == versions[0].version
        # The second call scored the very weights the first one logged.
        assert first.test is not None and again.test is not None
        assert again.test.age_accuracy == first.test.age_accuracy
        assert f"(version {versions[0].version}," in format_summary(again, config)


def test_a_failing_trial_is_a_failed_run_with_its_reason_and_the_study_finishes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    poisoned = dataclasses.replace(
        tiny_data,
        train=dataclasses.replace(
            tiny_data.train, x=torch.full_like(tiny_data.train.x, float("inf"))
        ),
    )
    config = _config(tmp_path, n_trials=2, n_epochs=1)
    with default_store(mlflow_db(tmp_path), monkeypatch, tmp_path) as client:
        result = run_study(config, track=True, data=poisoned, out=lambda _: None)
        assert result.counts["FAIL"] == 2
        found = check_tracked_study(client, _study(config), sampler="random", pruner="median")
        for run in found.trials.values():
            assert run.info.status == "FAILED"
            assert run.data.tags["optuna.trial_state"] == "FAIL"
            # The runner keeps the reason as a trial user attr, mirrored as a tag.
            assert "loss is not finite" in run.data.tags["fail_reason"]
        assert found.champion is None
        assert client.search_registered_models() == []
        assert "No trial completed" in format_summary(result, config)
        reasons = [run.data.tags["optuna.fail_reason"] for run in found.trials.values()]
        assert all("loss is not finite" in reason for reason in reasons), reasons


# -- secrets ------------------------------------------------------------------------------


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert "secret" not in redact_url("mysql+pymysql://u:secret@h:3306/db?charset=utf8")
    assert "secret" not in redact_url("postgresql://h/db?user=u&password=secret")
    assert redact_url("sqlite:///optuna.db") == "sqlite:///optuna.db"


def test_the_parent_run_never_shows_the_storage_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    # The study lives in SQLite; only the config (what the user typed) carries a password.
    config = _config(tmp_path, storage="postgresql://agehpo:s3cr3t@db.example:5432/optuna")
    uri = mlflow_db(tmp_path)
    with default_store(uri, monkeypatch, tmp_path) as client:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=f"sqlite:///{tmp_path}/optuna.db",
            direction="maximize",
        )
        objective = Objective(
            tiny_data, n_epochs=1, batch_size=64, device=torch.device("cpu"), seed=1
        )
        tracker = StudyTracker(config, BestModelKeeper(objective), tracking_uri=uri)
        parent_id = tracker.start(study, tiny_data)
        tracker.callback.close("FINISHED")
        parent = client.get_run(parent_id)
        assert parent.data.params["storage"] == "postgresql://agehpo:***@db.example:5432/optuna"
        everything = json.dumps([parent.data.params, parent.data.tags])
        assert "s3cr3t" not in everything
        assert parent.info.status == "FINISHED"


# -- agehpo predict -----------------------------------------------------------------------


@pytest.fixture
def labelled_csv(tmp_path: Path) -> Path:
    path = tmp_path / "faces.csv"
    write_csv(make_synthetic(30, seed=5), path)
    return path


def test_predict_prints_predictions_and_the_accuracy_on_labelled_rows(
    tracked: Tracked, labelled_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--model", CHAMPION, "--data", str(labelled_csv)]) == 0
    out = capsys.readouterr().out
    assert "age_range" in out and "prob_age_20-39" in out
    assert "Age-range accuracy on 30 labelled rows:" in out


def test_predict_writes_the_output_columns_and_reports_their_accuracy(
    tracked: Tracked, labelled_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "predictions.csv"
    argv = ["predict", "--model", CHAMPION, "--data", str(labelled_csv), "--out", str(out_csv)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Wrote 30 predictions to {out_csv}" in out
    written = pd.read_csv(out_csv, dtype={"age_range": str})
    assert list(written.columns) == OUTPUT_COLUMNS
    assert len(written) == 30
    faces = pd.read_csv(labelled_csv)
    expected = mlflow.pyfunc.load_model(CHAMPION).predict(faces[["pixels"]])
    assert written["age_bin"].tolist() == expected["age_bin"].tolist()
    np.testing.assert_allclose(written[PROBABILITY_COLUMNS], expected[PROBABILITY_COLUMNS])
    accuracy = float((written["age_bin"].to_numpy() == age_to_bin(faces["age"].to_numpy())).mean())
    assert f"Age-range accuracy on 30 labelled rows: {100 * accuracy:.2f} %" in out


def test_predict_without_labels_reports_no_accuracy(
    tracked: Tracked, labelled_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unlabelled = tmp_path / "pixels.csv"
    pd.read_csv(labelled_csv)[["pixels"]].to_csv(unlabelled, index=False)
    assert main(["predict", "--model", CHAMPION, "--data", str(unlabelled)]) == 0
    out = capsys.readouterr().out
    assert "age_range" in out
    assert "accuracy" not in out.lower()


def test_predict_rejects_a_wrong_pixel_count_with_one_line(
    tracked: Tracked, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    pixels = " ".join(["7"] * 2304)
    bad.write_text(f"pixels\n{pixels}\n{pixels}\n1 2 3\n")
    assert main(["predict", "--model", CHAMPION, "--data", str(bad)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith("agehpo: error: ")
    assert "row 2" in errors[0] and "3 values" in errors[0] and "2304" in errors[0]


# -- study identity -----------------------------------------------------------------------


def test_best_run_and_logged_model_are_never_another_same_name_study_s(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    uri = mlflow_db(tmp_path)
    objective = Objective(tiny_data, n_epochs=1, batch_size=64, device=torch.device("cpu"), seed=1)
    with default_store(uri, monkeypatch, tmp_path) as client:
        studies = {}
        for name in ("a", "b"):  # one study name, two storages, one experiment
            config = _config(tmp_path, storage=f"sqlite:///{tmp_path}/{name}.db")
            study = optuna.create_study(
                study_name=config.study_name, storage=config.storage, direction="maximize"
            )
            tracker = StudyTracker(config, BestModelKeeper(objective), tracking_uri=uri)
            tracker.start(study, tiny_data)
            study.enqueue_trial({"x": 0.9 if name == "a" else 0.1})
            study.enqueue_trial({"x": 0.05})  # fixed, so trial 0 is each study's best
            study.optimize(
                lambda t: t.suggest_float("x", 0, 1), n_trials=2, callbacks=[tracker.callback]
            )
            tracker.close()
            studies[name] = (config, study)
        config_a, a = studies["a"]
        config_b, b = studies["b"]
        # A logged a model for its best trial; B has none for its trial of that number.
        assert a.best_trial.number == 0
        a_best = StudyTracker(config_a, BestModelKeeper(objective), tracking_uri=uri)
        a_run = a_best.best_run_id(a)
        assert a_run is not None
        client.set_tag(a_run, "agehpo.model_id", "m-of-study-a")
        # A fresh tracker of B (as after workers ran the trials): lookups by B's uid only.
        b_best = StudyTracker(config_b, BestModelKeeper(objective), tracking_uri=uri)
        b_run = b_best.best_run_id(b)
        assert b_run is not None and b_run != a_run
        tags = client.get_run(b_run).data.tags
        assert tags["optuna.study_uid"] == b.user_attrs["optuna_mlflow.study_uid"]
        assert tags["optuna.trial_number"] == str(b.best_trial.number)
        assert b_best.fetch_logged(b)(0) is None  # never A's model of trial 0
        a_best.close()
        b_best.close()
        assert all(r.info.status != "RUNNING" for r in all_runs(client))


def test_a_second_study_of_one_model_name_takes_the_alias_and_says_from_whom(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    lines: dict[str, list[str]] = {}  # the notes the CLI prints under the summary
    with default_store(mlflow_db(tmp_path), monkeypatch, tmp_path) as client:
        for key, name in (("first", "quick"), ("second", "look"), ("again", "look")):
            config = _config(tmp_path, study_name=name, n_epochs=1)
            lines[key] = run_study(config, track=True, data=tiny_data, out=lambda _: None).notes
        champion = client.get_model_version_by_alias("age-predictor", "champion")
    moved = [line for key in lines for line in lines[key] if "alias moved" in line]
    assert champion.tags["optuna.study_name"] == "look"
    assert moved == [
        f"  The alias moved from version {int(champion.version) - 1} of study 'quick'; to keep "
        "each study's champion, give each study its own model_name"
    ]
    assert any(line in lines["second"] for line in moved)  # said once, when it moved


def test_close_with_end_parent_ends_the_mlflow_run_parent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> None:
    uri = mlflow_db(tmp_path)
    objective = Objective(tiny_data, n_epochs=1, batch_size=64, device=torch.device("cpu"), seed=1)
    with default_store(uri, monkeypatch, tmp_path) as client:
        project = client.create_run(client.create_experiment("project")).info.run_id
        config = _config(tmp_path)
        study = optuna.create_study(study_name=config.study_name, storage=config.storage)
        tracker = StudyTracker(
            config, BestModelKeeper(objective), tracking_uri=uri, parent_run_id=project
        )
        tracker.start(study, tiny_data)
        tracker.close("KILLED")
        assert client.get_run(project).info.status == "RUNNING"  # `mlflow run` ends it
        # The `mlflow run` process died: nobody else will end its run.
        tracker.close("KILLED", end_parent=True)
        assert client.get_run(project).info.status == "KILLED"
