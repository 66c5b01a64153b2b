"""The champion's report card in a real SQLite MLflow store: the parent run's metrics and
``evaluation/`` files, the champion version's tags, and ``agehpo predict``'s table."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _mlflow_helpers import PARENT_RUN_ID, all_runs, artifact_paths, default_store
from mlflow import MlflowClient
from mlflow.entities import Run
from sklearn.metrics import confusion_matrix, f1_score

from agehpo.cli import main
from agehpo.config import StudyConfig
from agehpo.data import PreparedData, make_synthetic, write_csv
from agehpo.evaluation import HEAD_CLASSES, HEADS
from agehpo.study import StudyResult, run_study
from agehpo.tracking.report_card import RUN_TAG, STUDY_UID_ATTR, tag_champion

MODEL = "card-model"


@dataclass
class Carded:
    config: StudyConfig
    result: StudyResult
    client: MlflowClient
    parent: Run


@pytest.fixture(scope="module")
def carded(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_data: PreparedData,
    mlflow_db: Callable[[Path], str],
) -> Iterator[Carded]:
    """One tracked study of 1 one-epoch trial, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("card")
    config = StudyConfig(
        n_trials=1,
        n_epochs=1,
        storage=f"sqlite:///{root}/optuna.db",
        sampler="random",
        pruner="none",
        device="cpu",
        img_size=12,  # the size tiny_data was prepared at
        model_name=MODEL,
    )
    with (
        pytest.MonkeyPatch.context() as patch,
        default_store(mlflow_db(root), patch, root) as client,
    ):
        result = run_study(config, track=True, data=tiny_data, out=lambda _: None)
        parent = next(r for r in all_runs(client) if PARENT_RUN_ID not in r.data.tags)
        yield Carded(config, result, client, parent)


def _download(client: MlflowClient, run_id: str, path: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="card-"))
    return Path(client.download_artifacts(run_id, path, str(folder)))


def test_parent_run_and_champion_carry_the_card(carded: Carded) -> None:
    card = carded.result.card
    assert card is not None
    run_id = carded.parent.info.run_id
    metrics = carded.parent.data.metrics
    for key, value in card.metrics().items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["test_age_macro_f1"] == pytest.approx(card.heads["age"].macro_f1)
    files = {f"evaluation/{name}" for name in ("predictions.csv", "metrics.json")}
    files |= {f"evaluation/confusion_{h}.{ext}" for h in HEADS for ext in ("png", "json")}
    assert files <= artifact_paths(carded.client, run_id)

    version = carded.client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags[RUN_TAG] == run_id
    for head in HEADS:
        report = card.heads[head]
        assert version.tags[f"test_{head}_macro_f1"] == f"{report.macro_f1:.4f}"
        assert version.tags[f"test_{head}_balanced_accuracy"] == f"{report.balanced_accuracy:.4f}"
        baseline = version.tags[f"test_{head}_majority_baseline_accuracy"]
        assert baseline == f"{report.majority_accuracy:.4f}"
        per_class = json.loads(version.tags[f"test_{head}_per_class"])
        assert list(per_class) == list(HEAD_CLASSES[head])
    summary = "\n".join(carded.result.notes)
    assert "Registered models:/card-model@champion" in summary


def test_logged_predictions_recompute_macro_f1_and_the_confusion_matrix(carded: Carded) -> None:
    client, run_id = carded.client, carded.parent.info.run_id
    predictions = pd.read_csv(_download(client, run_id, "evaluation/predictions.csv"))
    test_rows = len(carded.result.card.predictions) if carded.result.card else -1
    assert len(predictions) == test_rows
    metrics = carded.parent.data.metrics
    version = client.get_model_version_by_alias(MODEL, "champion")
    for head, classes in HEAD_CLASSES.items():
        labels = list(range(len(classes)))
        true, pred = predictions[f"{head}_true"], predictions[f"{head}_pred"]
        macro = f1_score(true, pred, labels=labels, average="macro", zero_division=0)
        assert metrics[f"test_{head}_macro_f1"] == pytest.approx(macro)
        assert version.tags[f"test_{head}_macro_f1"] == f"{macro:.4f}"
        logged = json.loads(
            _download(client, run_id, f"evaluation/confusion_{head}.json").read_text()
        )
        assert logged["counts"] == confusion_matrix(true, pred, labels=labels).tolist()
        assert logged["classes"] == list(classes)
    # The predictions CSV also agrees with the accuracies the tracker logged.
    accuracy = float(np.mean(predictions["age_true"] == predictions["age_pred"]))
    assert metrics["test_age_accuracy"] == pytest.approx(accuracy)


def test_a_champion_of_another_study_is_left_alone(carded: Carded) -> None:
    card = carded.result.card
    assert card is not None
    study = carded.result.study
    uid = study.user_attrs[STUDY_UID_ATTR]
    number = study.best_trial.number
    before = carded.client.get_model_version_by_alias(MODEL, "champion").tags
    stranger = dataclasses.replace(card, heads={})
    args = (carded.client, MODEL)
    assert tag_champion(*args, "another-uid", number, stranger, "run") is None
    assert tag_champion(*args, uid, number + 1, stranger, "run") is None
    assert tag_champion(*args, None, number, stranger, "run") is None
    assert tag_champion(carded.client, "no-such-model", uid, number, stranger, "run") is None
    assert carded.client.get_model_version_by_alias(MODEL, "champion").tags == before


def test_predict_on_a_labelled_csv_prints_the_age_range_table(
    carded: Carded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faces = tmp_path / "faces.csv"
    write_csv(make_synthetic(40, seed=5), faces)
    uri = carded.client.tracking_uri
    with pytest.MonkeyPatch.context() as patch, default_store(uri, patch, tmp_path):
        code = main(["predict", "--model", f"models:/{MODEL}@champion", "--data", str(faces)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Age-range accuracy on 40 labelled rows:" in out
    table = out[out.index("  age    precision") :].splitlines()
    assert [line.split()[0] for line in table[1:6]] == ["0-9", "10-19", "20-39", "40-59", "60+"]
    assert "macro-F1" in table[6] and "always answering" in table[6]
