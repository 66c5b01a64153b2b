from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agehpo.data import TensorSplit
from agehpo.nn.model import HeadLogits, build_model
from agehpo.nn.train import (
    DeviceError,
    EpochMetrics,
    evaluate,
    make_optimizer,
    multitask_loss,
    predict_probabilities,
    resolve_device,
    train_epoch,
)

PARAMS = {
    "num_fc_layers": 4,
    **{f"fc_output_feat_{i}": 32 for i in range(4)},
    **{f"fc_dropout_{i}": 0.0 for i in range(4)},
    "last_fc": 32,
    "optimizer": "Adam",
    "lr": 3e-3,
}
LN2 = math.log(2)


def easy_split(n_rows: int = 512, seed: int = 0) -> TensorSplit:
    """Labels are read straight off the inputs, so any working trainer learns them."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, 16, generator=generator)
    return TensorSplit(
        x=x,
        age_bin=x[:, :5].argmax(1),
        ethnicity=x[:, 5:10].argmax(1),
        gender=(x[:, 10] > 0).long(),
    )


def _one_hot(classes: int, predicted: list[int], value: float) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), classes).float() * value


class FixedLogits(nn.Module):
    """Row ``x[i, 0]`` gets fixed logits: each head puts ``ln 4`` (age, ethnicity) or ``ln 3``
    (gender) on its predicted class and 0 elsewhere, so every cross-entropy is known:
    ln 2 or ln 8 for age and ethnicity, ln 4/3 or ln 4 for gender (right or wrong)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = HeadLogits(
            _one_hot(5, [2, 0, 4, 1], math.log(4)),
            _one_hot(5, [3, 3, 0, 2], math.log(4)),
            _one_hot(2, [0, 1, 1, 1], math.log(3)),
        )
        # Added to every logit: softmax ignores it, so its gradient is 0 and nothing learns.
        self.shift = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> HeadLogits:
        rows = x[:, 0].long()
        return HeadLogits(*(head[rows] + self.shift for head in self.table))


# Right per head: age rows 0, 1, 3; ethnicity rows 0, 2, 3; gender rows 0, 1, 2; all: row 0.
KNOWN = TensorSplit(
    x=torch.arange(4.0).unsqueeze(1),
    age_bin=torch.tensor([2, 0, 3, 1]),
    ethnicity=torch.tensor([3, 1, 0, 2]),
    gender=torch.tensor([0, 1, 1, 0]),
)
# Age and ethnicity: three rows of ln 2, one of ln 8 each; gender: three of ln 4/3, one of ln 4.
KNOWN_LOSS = (2 * (3 * LN2 + 3 * LN2) + 3 * math.log(4 / 3) + math.log(4)) / 4


def test_multitask_loss_sums_the_three_cross_entropies() -> None:
    loss = multitask_loss(FixedLogits()(KNOWN.x), KNOWN)
    assert loss.item() == pytest.approx(KNOWN_LOSS, rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 8192])
def test_evaluate_gives_the_known_accuracies_and_loss(batch_size: int) -> None:
    metrics = evaluate(FixedLogits(), KNOWN, batch_size=batch_size)
    assert metrics.accuracies("val_") == {
        "val_age_accuracy": 0.75,
        "val_ethnicity_accuracy": 0.75,
        "val_gender_accuracy": 0.75,
        "val_all_accuracy": 0.25,  # all three right at once: row 0 only
    }
    assert metrics.loss == pytest.approx(KNOWN_LOSS, rel=1e-6)


def test_train_epoch_returns_the_mean_loss_over_rows_not_batches() -> None:
    model = FixedLogits()
    optimizer = make_optimizer("SGD", model.parameters(), 0.1)
    # Batches of 3 and 1 rows: a mean of batch means would weigh the last row 3x.
    loss = train_epoch(model, optimizer, KNOWN, batch_size=3)
    assert loss == pytest.approx(KNOWN_LOSS, rel=1e-6)
    after = evaluate(model, KNOWN)  # the shift learned nothing
    assert after == EpochMetrics(after.loss, 0.75, 0.75, 0.75, 0.25)
    assert after.loss == pytest.approx(KNOWN_LOSS, rel=1e-6)


def test_predict_probabilities_are_the_softmax_of_each_head() -> None:
    probabilities = predict_probabilities(FixedLogits(), KNOWN.x, batch_size=3)
    assert [tuple(p.shape) for p in probabilities] == [(4, 5), (4, 5), (4, 2)]
    # ln 4 on one class of five: 4/8 there, 1/8 on each other; ln 3 on one of two: 3/4.
    torch.testing.assert_close(probabilities.age[0], torch.tensor([1, 1, 4, 1, 1]) / 8)
    torch.testing.assert_close(probabilities.gender[1], torch.tensor([0.25, 0.75]))


def test_one_epoch_reduces_the_loss_on_an_easy_set() -> None:
    torch.manual_seed(0)
    split = easy_split(512)
    model = build_model(PARAMS, in_features=16)
    optimizer = make_optimizer("Adam", model.parameters(), 1e-2)
    before = evaluate(model, split)
    train_loss = train_epoch(
        model, optimizer, split, batch_size=32, generator=torch.Generator().manual_seed(0)
    )
    after = evaluate(model, split)
    assert math.isfinite(train_loss)
    assert after.loss < before.loss - 0.1
    assert after.age_accuracy > before.age_accuracy


def test_training_is_reproducible_on_cpu() -> None:
    split = easy_split()
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model({**PARAMS, "fc_dropout_0": 0.3}, in_features=16)
        optimizer = make_optimizer("Adam", model.parameters(), 3e-3)
        losses.append(
            train_epoch(model, optimizer, split, generator=torch.Generator().manual_seed(7))
        )
    assert losses[0] == losses[1]


@pytest.mark.parametrize("name", ["Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD"])
def test_every_seed_optimizer_steps(name: str) -> None:
    model = build_model(PARAMS, in_features=16)
    optimizer = make_optimizer(name, model.parameters(), 1e-3)
    assert type(optimizer).__name__ == name
    before = [p.clone() for p in model.parameters()]
    train_epoch(model, optimizer, easy_split(64), batch_size=64)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("name", "capturable", "expected"),
    [
        ("Adam", False, {"fused": True}),
        ("Adam", True, {"capturable": True, "foreach": True}),
        ("SGD", True, {"fused": True}),
        ("RMSprop", False, {"foreach": True, "capturable": False}),
        ("Adadelta", True, {"foreach": True, "capturable": True}),
    ],
)
def test_optimizers_use_the_fast_kernels(name: str, capturable: bool, expected: dict) -> None:
    optimizer = make_optimizer(name, nn.Linear(2, 2).parameters(), 1e-3, capturable=capturable)
    assert {key: optimizer.defaults[key] for key in expected} == expected


def test_unknown_optimizer_and_device_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="optimizer='Nadam' is not one of: Adam, Adadelta"):
        make_optimizer("Nadam", [], 1e-3)
    with pytest.raises(DeviceError, match="device='tpu' is not one of: auto, cpu, cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")
    with pytest.raises(DeviceError, match="device='cuda-graph' needs CUDA"):
        resolve_device("cuda-graph")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == resolve_device("cuda-graph") == torch.device("cuda")
