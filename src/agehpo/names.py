"""Names that several layers and the MLflow records share, each list defined once."""

from __future__ import annotations

OPTIMIZERS = ("Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD")
# Accuracy of each head, then of all three right at once: EpochMetrics' fields, in order.
ACCURACIES = ("age_accuracy", "ethnicity_accuracy", "gender_accuracy", "all_accuracy")
# The study maximizes this one; it is also the Optuna value each epoch reports.
OBJECTIVE_METRIC = "val_age_accuracy"
# Every epoch of a trial run logs these, at step = epoch.
EPOCH_METRICS = ("train_loss", "val_loss", *(f"val_{name}" for name in ACCURACIES))
