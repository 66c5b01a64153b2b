"""The study's best model at the end: its weights, and its scores on the test split."""

from __future__ import annotations

import threading
from collections.abc import Callable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from agehpo.data import PreparedData, TensorSplit
from agehpo.evaluation import HEADS, predictions_frame
from agehpo.nn.model import AgeNet, build_model
from agehpo.nn.train import EpochMetrics, evaluate, predict_probabilities
from agehpo.objective import Objective, TrainedModel


class BestModelKeeper:
    """A trial callback keeping this process's best weights (from ``objective``)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.best: tuple[int, TrainedModel] | None = None
        self._lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        model = self.objective.pop_model(trial.number)
        if model is None or trial.state != TrialState.COMPLETE:
            return
        with self._lock:
            if study.best_trial.number == trial.number:
                self.best = (trial.number, model)


def best_model(
    study: optuna.Study,
    objective: Objective,
    keeper: BestModelKeeper,
    fetch_logged: Callable[[int], TrainedModel | None] | None = None,
) -> tuple[TrainedModel, str] | None:
    """The best trial's weights: kept by ``keeper``, logged by another worker, or retrained;
    with ``"kept"``, ``"logged"`` or ``"retrained"``. None without a COMPLETE trial."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    if keeper.best is not None and keeper.best[0] == best.number:
        return keeper.best[1], "kept"
    if fetch_logged is not None and (logged := fetch_logged(best.number)) is not None:
        return logged, "logged"
    model = objective.retrain(best.params, best.number)
    return (model, "retrained") if model is not None else None


def _network(trained: TrainedModel, split: TensorSplit) -> AgeNet:
    model = build_model(trained.params, trained.in_features)
    model.load_state_dict(trained.state_dict)
    return model.to(split.x.device)


def test_metrics(data: PreparedData, trained: TrainedModel) -> EpochMetrics:
    """Score a trained model on the held-out test split."""
    return evaluate(_network(trained, data.test), data.test)


def test_predictions(data: PreparedData, trained: TrainedModel) -> pd.DataFrame:
    """The model's predictions for every test row, with the true labels."""
    split = data.test
    probabilities = predict_probabilities(_network(trained, split), split.x)
    true = dict(zip(HEADS, (split.age_bin, split.ethnicity, split.gender), strict=True))
    return predictions_frame(
        {head: labels.cpu().numpy() for head, labels in true.items()},
        {head: getattr(probabilities, head).argmax(1).cpu().numpy() for head in HEADS},
        probabilities.age.double().cpu().numpy(),
    )
