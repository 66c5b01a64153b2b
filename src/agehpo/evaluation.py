"""The champion's report card: per-class metrics and confusion matrices from predictions."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agehpo.data.faces import AGE_RANGES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Class names per head, in label order (the UTKFace coding the Kaggle CSV uses).
HEAD_CLASSES: dict[str, tuple[str, ...]] = {
    "age": AGE_RANGES,
    "ethnicity": ("White", "Black", "Asian", "Indian", "Others"),
    "gender": ("male", "female"),
}
HEADS: tuple[str, ...] = tuple(HEAD_CLASSES)
PER_CLASS = ("precision", "recall", "f1")
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class HeadReport:
    """How one head did: confusion counts (rows true, columns predicted), per-class scores in
    ``classes`` order, and what always answering the most frequent true class scores."""

    head: str
    classes: tuple[str, ...]
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    majority_class: str
    majority_accuracy: float
    majority_macro_f1: float

    def normalized(self) -> np.ndarray:
        """The confusion matrix with each row divided by its count (a row of 0s: no rows)."""
        totals = self.confusion.sum(axis=1, keepdims=True)
        shares = np.zeros(self.confusion.shape)
        return np.divide(self.confusion, totals, out=shares, where=totals > 0)

    def summary(self) -> dict[str, float]:
        """The head's single-number metrics, keyed without the head's name."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "balanced_accuracy": self.balanced_accuracy,
            "majority_baseline_accuracy": self.majority_accuracy,
            "majority_baseline_macro_f1": self.majority_macro_f1,
        }

    def per_class(self) -> dict[str, dict[str, float]]:
        """Class name -> precision, recall, F1 and support."""
        rows = zip(self.classes, self.precision, self.recall, self.f1, self.support, strict=True)
        return {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in rows
        }


@dataclass(frozen=True)
class ReportCard:
    """Every head's report and the per-row predictions they were computed from."""

    heads: dict[str, HeadReport]
    predictions: pd.DataFrame

    def summary_metrics(self) -> dict[str, float]:
        """``test_{head}_{summary}`` -> value, but the accuracies (logged elsewhere)."""
        return {
            f"test_{head}_{k}": v
            for head, report in self.heads.items()
            for k, v in report.summary().items()
            if k != "accuracy"
        }

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: the summary ones and ``test_{head}_{measure}_{class}``."""
        return self.summary_metrics() | {
            f"test_{head}_{measure}_{metric_key(name)}": values[measure]
            for head, report in self.heads.items()
            for name, values in report.per_class().items()
            for measure in PER_CLASS
        }


def metric_key(class_name: str) -> str:
    """A class name as MLflow accepts it in a metric name: ``60+`` -> ``60plus``."""
    return class_name.replace("+", "plus").replace(" ", "_").lower()


def predictions_frame(
    true: Mapping[str, np.ndarray],
    predicted: Mapping[str, np.ndarray],
    age_probabilities: np.ndarray | None = None,
) -> pd.DataFrame:
    """The frame :func:`evaluate` reads, a row per face: ``row``, ``{head}_true`` and
    ``{head}_pred`` class indices, then ``prob_age_{range}`` from ``age_probabilities``."""
    frame = pd.DataFrame({"row": np.arange(len(true["age"]))})
    for head in HEADS:
        frame[f"{head}_true"] = np.asarray(true[head], dtype=np.int64)
        frame[f"{head}_pred"] = np.asarray(predicted[head], dtype=np.int64)
    if age_probabilities is not None:
        frame[[f"prob_age_{name}" for name in AGE_RANGES]] = np.asarray(age_probabilities)
    return frame


def evaluate_head(head: str, y_true: np.ndarray, y_pred: np.ndarray) -> HeadReport:
    """Score one head over all of its classes; ValueError for no rows or unequal lengths."""
    from sklearn import metrics

    classes = HEAD_CLASSES[head]
    labels = list(range(len(classes)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise ValueError(
            f"{head}: {len(y_true)} true and {len(y_pred)} predicted labels; expected the "
            "same number, at least one"
        )

    def f1_scores(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return metrics.precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)

    scores = f1_scores(y_pred)
    majority = int(np.bincount(y_true, minlength=len(classes)).argmax())
    with warnings.catch_warnings():
        # A small test set may lack a class; balanced accuracy then averages the others.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(metrics.balanced_accuracy_score(y_true, y_pred))
    return HeadReport(
        head,
        classes,
        metrics.confusion_matrix(y_true, y_pred, labels=labels),
        *scores,
        accuracy=float(np.mean(y_true == y_pred)),
        macro_f1=float(np.mean(scores[2])),  # over every class, those never seen included
        balanced_accuracy=balanced,
        majority_class=classes[majority],
        majority_accuracy=float(np.mean(y_true == majority)),
        majority_macro_f1=float(np.mean(f1_scores(np.full_like(y_true, majority))[2])),
    )


def evaluate(predictions: pd.DataFrame) -> ReportCard:
    """Score every head from a frame of :func:`predictions_frame` (or its CSV, read back)."""
    columns = {head: predictions[[f"{head}_true", f"{head}_pred"]] for head in HEADS}
    heads = {h: evaluate_head(h, *frame.to_numpy(np.int64).T) for h, frame in columns.items()}
    return ReportCard(heads, predictions)


def format_head(report: HeadReport) -> list[str]:
    """A per-class table and a line that sets macro-F1 against the majority baseline."""
    width = max(len("class"), *(len(c) for c in report.classes))
    lines = [f"  {report.head:<{width}}  precision  recall      F1  support"]
    lines += [
        f"  {name:<{width}}  {100 * v['precision']:7.1f} % {100 * v['recall']:5.1f} %"
        f" {100 * v['f1']:5.1f} %  {v['support']:7d}"
        for name, v in report.per_class().items()
    ]
    lines.append(
        f"  macro-F1 {100 * report.macro_f1:.1f} %, balanced accuracy "
        f"{100 * report.balanced_accuracy:.1f} %, accuracy {100 * report.accuracy:.1f} %; "
        f"always answering {report.majority_class!r}: accuracy "
        f"{100 * report.majority_accuracy:.1f} %, macro-F1 {100 * report.majority_macro_f1:.1f} %"
    )
    return lines


def confusion_figure(report: HeadReport) -> Figure:
    """Counts and row-normalised confusion matrices side by side, class names on the axes."""
    import matplotlib
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    if "matplotlib.pyplot" not in sys.modules:
        # ConfusionMatrixDisplay imports pyplot: headless, unless the host app chose a backend.
        matplotlib.use("Agg")
    # A Figure without pyplot state; fixed margins (a layout engine doubled the time).
    fig = Figure(figsize=(10, 4.6), dpi=90)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.84, wspace=0.25)
    left, right = fig.subplots(1, 2)
    n = int(report.confusion.sum())
    for ax, matrix, fmt, title in (
        (left, report.confusion, "d", f"counts (n = {n})"),
        (right, report.normalized(), ".2f", "row-normalised (recall on the diagonal)"),
    ):
        display = ConfusionMatrixDisplay(matrix, display_labels=list(report.classes))
        display.plot(ax=ax, cmap="Blues", colorbar=False, values_format=fmt)
        ax.set(title=title, xlabel=f"predicted {report.head}", ylabel=f"true {report.head}")
    fig.suptitle(
        f"{report.head} on the held-out test split: macro-F1 {report.macro_f1:.3f}, "
        f"balanced accuracy {report.balanced_accuracy:.3f} "
        f"(always {report.majority_class!r}: accuracy {report.majority_accuracy:.3f})"
    )
    return fig


def write_files(card: ReportCard, folder: Path) -> list[Path]:
    """Write the predictions CSV, metrics JSON and a confusion PNG and JSON per head; the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / PREDICTIONS_FILE, folder / METRICS_FILE]
    card.predictions.to_csv(written[0], index=False, float_format="%.6g")
    summary = {
        head: {**r.summary(), "majority_class": r.majority_class, "per_class": r.per_class()}
        for head, r in card.heads.items()
    }
    written[1].write_text(json.dumps(summary, indent=2) + "\n")
    for head, report in card.heads.items():
        png, matrix = folder / f"confusion_{head}.png", folder / f"confusion_{head}.json"
        confusion_figure(report).savefig(png)
        counts, shares = report.confusion.tolist(), np.round(report.normalized(), 6).tolist()
        layout = {"head": head, "classes": list(report.classes), "rows": "true class"}
        layout |= {"columns": "predicted class", "counts": counts, "row_normalized": shares}
        matrix.write_text(json.dumps(layout, indent=2) + "\n")
        written += [png, matrix]
    return written
