from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from agehpo.data import PreparedData
from agehpo.hpo.runner import TrialRunner
from agehpo.hpo.storage import BudgetLock
from agehpo.names import EPOCH_METRICS
from agehpo.nn.model import build_model
from agehpo.nn.train import evaluate
from agehpo.objective import NonFiniteLossError, Objective

SEED_BEST = {
    "num_fc_layers": 5,
    **{f"fc_output_feat_{i}": s for i, s in enumerate([55, 53, 62, 62, 28])},
    **{f"fc_dropout_{i}": p for i, p in enumerate([0.13, 0.15, 0.07, 0.04, 0.39])},
    "last_fc": 55,
    "optimizer": "Adam",
    "lr": 0.00268,
}


def _objective(data: PreparedData, n_epochs: int = 3, hooks: list | None = None) -> Objective:
    return Objective(
        data,
        n_epochs=n_epochs,
        batch_size=64,
        device=torch.device("cpu"),
        seed=1,
        epoch_hooks=hooks or [],
    )


def test_epoch_metric_names_are_the_design_contract() -> None:
    assert EPOCH_METRICS == (
        "train_loss",
        "val_loss",
        "val_age_accuracy",
        "val_ethnicity_accuracy",
        "val_gender_accuracy",
        "val_all_accuracy",
    )


def test_reports_every_epoch_and_hands_metrics_to_the_hooks(tiny_data: PreparedData) -> None:
    seen: list[tuple[int, int, dict[str, float]]] = []
    objective = _objective(
        tiny_data, hooks=[lambda trial, epoch, m: seen.append((trial.number, epoch, dict(m)))]
    )
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial(SEED_BEST)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert [epoch for _, epoch, _ in seen] == [1, 2, 3]
    assert set(seen[0][2]) == set(EPOCH_METRICS)
    assert trial.value == seen[-1][2]["val_age_accuracy"] == trial.intermediate_values[3]
    kept = objective.pop_model(0)
    assert kept is not None and kept.params == SEED_BEST
    assert objective.pop_model(0) is None
    # The last epoch's metrics are the kept weights' own, on the validation split.
    model = build_model(kept.params, kept.in_features)
    model.load_state_dict(kept.state_dict)
    val = evaluate(model, tiny_data.val)
    expected = {"val_loss": val.loss, **val.accuracies("val_")}
    assert {name: seen[-1][2][name] for name in expected} == pytest.approx(expected, rel=1e-6)
    assert seen[0][2]["train_loss"] > seen[-1][2]["train_loss"] > 0  # it learns


def test_prunes_when_the_pruner_says_so(tiny_data: PreparedData) -> None:
    # Accuracy can never reach 2.0, so the threshold pruner prunes at the first epoch.
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0)
    )
    study.optimize(_objective(tiny_data), n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(sorted(t.intermediate_values) == [1] for t in study.trials)


def test_a_nonfinite_loss_fails_the_trial_and_the_study_goes_on(
    tiny_data: PreparedData, tmp_path
) -> None:
    poisoned = dataclasses.replace(
        tiny_data,
        train=dataclasses.replace(
            tiny_data.train, x=torch.full_like(tiny_data.train.x, float("inf"))
        ),
    )
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path}/o.db")
    runner = TrialRunner(
        study,
        _objective(poisoned, n_epochs=1),
        n_trials=2,
        budget_lock=BudgetLock(f"sqlite:///{tmp_path}/o.db", "x"),
    )
    runner.run()
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "loss is not finite at epoch 1" in study.trials[0].user_attrs["fail_reason"]


def test_nonfinite_loss_raises_a_named_error(tiny_data: PreparedData) -> None:
    poisoned = dataclasses.replace(
        tiny_data,
        train=dataclasses.replace(
            tiny_data.train, x=torch.full_like(tiny_data.train.x, float("nan"))
        ),
    )
    with pytest.raises(NonFiniteLossError, match="diverged"):
        _objective(poisoned, n_epochs=1)(optuna.trial.FixedTrial(SEED_BEST))
