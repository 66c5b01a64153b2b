"""The report card's numbers, table, figures and files, from known labels and predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agehpo.data.faces import AGE_RANGES
from agehpo.evaluation import (
    HEADS,
    METRICS_FILE,
    PREDICTIONS_FILE,
    confusion_figure,
    evaluate,
    evaluate_head,
    format_head,
    metric_key,
    predictions_frame,
    write_files,
)


def _frame() -> pd.DataFrame:
    """Ten faces: age heavy on 20-39 (class 2) and never 60+ (class 4) in the labels."""
    age_true = np.array([2, 2, 2, 2, 2, 0, 0, 1, 3, 3])
    age_pred = np.array([2, 2, 2, 2, 3, 0, 2, 2, 3, 4])
    ethnicity = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    gender = np.array([0, 1] * 5)
    true = {"age": age_true, "ethnicity": ethnicity, "gender": gender}
    predicted = {"age": age_pred, "ethnicity": ethnicity, "gender": 1 - gender}
    return predictions_frame(true, predicted, np.arange(50).reshape(10, 5) / 100)


def test_predictions_frame_columns() -> None:
    frame = _frame()
    assert list(frame.columns) == [
        "row",
        *(f"{head}_{kind}" for head in HEADS for kind in ("true", "pred")),
        *(f"prob_age_{name}" for name in AGE_RANGES),
    ]
    assert frame["row"].tolist() == list(range(10))
    assert frame["gender_pred"].tolist() == [1, 0] * 5
    assert frame["prob_age_60+"].tolist() == pytest.approx([0.04 + 0.05 * i for i in range(10)])
    columns = {
        kind: {h: frame[f"{h}_{kind}"].to_numpy() for h in HEADS} for kind in ("true", "pred")
    }
    bare = predictions_frame(columns["true"], columns["pred"])  # no probabilities
    assert bare.equals(frame.iloc[:, :7])


def test_age_metrics_are_hand_checked() -> None:
    age = evaluate(_frame()).heads["age"]
    assert age.classes == AGE_RANGES
    assert age.confusion.tolist() == [
        [1, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 4, 1, 0],
        [0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0],
    ]
    # precision: 1/1, never predicted, 4/6, 1/2, 0/1; recall: 1/2, 0/1, 4/5, 1/2, no rows
    assert age.precision == pytest.approx([1, 0, 4 / 6, 0.5, 0])
    assert age.recall == pytest.approx([0.5, 0, 0.8, 0.5, 0])
    f1 = [2 / 3, 0, 2 * (4 / 6 * 0.8) / (4 / 6 + 0.8), 0.5, 0]
    assert age.f1 == pytest.approx(f1)
    assert age.support.tolist() == [2, 1, 5, 2, 0]
    assert age.macro_f1 == pytest.approx(sum(f1) / 5)  # over all five ranges
    assert age.balanced_accuracy == pytest.approx((0.5 + 0 + 0.8 + 0.5) / 4)  # classes seen
    assert age.accuracy == pytest.approx(0.6)
    assert (age.majority_class, age.majority_accuracy) == ("20-39", 0.5)
    assert age.majority_macro_f1 == pytest.approx((2 * 0.5 / 1.5) / 5)
    normalized = age.normalized()
    assert normalized[2].tolist() == pytest.approx([0, 0, 0.8, 0.2, 0])
    assert normalized[4].tolist() == [0, 0, 0, 0, 0]  # no 60+ rows: zeros, not nan


def test_perfect_and_inverted_heads() -> None:
    card = evaluate(_frame())
    assert card.heads["ethnicity"].macro_f1 == 1.0
    assert card.heads["gender"].macro_f1 == 0.0
    assert card.heads["gender"].confusion.tolist() == [[0, 5], [5, 0]]


def test_metric_names_cover_every_class_without_characters_mlflow_refuses() -> None:
    metrics = evaluate(_frame()).metrics()
    assert metric_key("60+") == "60plus"
    assert metrics["test_age_f1_20-39"] == pytest.approx(0.7272727)
    assert metrics["test_ethnicity_recall_white"] == 1.0
    assert metrics["test_age_majority_baseline_accuracy"] == 0.5
    assert "test_age_accuracy" not in metrics  # the tracker logs the accuracies
    assert len(metrics) == 3 * 4 + 3 * (5 + 5 + 2)
    assert all(re.fullmatch(r"[a-z0-9_-]+", name) for name in metrics)  # no "+" of "60+"


def test_table_lists_every_range_and_the_baseline() -> None:
    lines = format_head(evaluate(_frame()).heads["age"])
    assert len(lines) == 1 + len(AGE_RANGES) + 1
    assert lines[0].split() == ["age", "precision", "recall", "F1", "support"]
    assert lines[3].split() == ["20-39", "66.7", "%", "80.0", "%", "72.7", "%", "5"]
    assert "macro-F1 37.9 %" in lines[-1]
    assert "always answering '20-39': accuracy 50.0 %" in lines[-1]


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="3 true and 2 predicted"):
        evaluate_head("age", np.array([1, 2, 3]), np.array([1, 2]))


def test_figure_names_the_classes_on_both_axes() -> None:
    fig = confusion_figure(evaluate(_frame()).heads["ethnicity"])
    counts, shares = fig.axes[:2]
    names = ["White", "Black", "Asian", "Indian", "Others"]
    for ax in (counts, shares):
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert counts.get_ylabel() == "true ethnicity"
    assert shares.get_xlabel() == "predicted ethnicity"


def test_files_reproduce_the_card(tmp_path: Path) -> None:
    card = evaluate(_frame())
    written = write_files(card, tmp_path)
    names = {p.name for p in written}
    assert names == {
        PREDICTIONS_FILE,
        METRICS_FILE,
        *(f"confusion_{h}.{ext}" for h in HEADS for ext in ("png", "json")),
    }
    for head in HEADS:
        png = (tmp_path / f"confusion_{head}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) < 200_000
        matrix = json.loads((tmp_path / f"confusion_{head}.json").read_text())
        assert matrix["counts"] == card.heads[head].confusion.tolist()
        assert matrix["classes"] == list(card.heads[head].classes)
    again = evaluate(pd.read_csv(tmp_path / PREDICTIONS_FILE))
    assert again.metrics() == pytest.approx(card.metrics())
    summary = json.loads((tmp_path / METRICS_FILE).read_text())
    assert summary["age"]["macro_f1"] == pytest.approx(card.heads["age"].macro_f1)
    assert summary["age"]["per_class"]["0-9"]["support"] == 2
