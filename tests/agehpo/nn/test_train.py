from __future__ import annotations

import math

import pytest
import torch

from agehpo.data import TensorSplit
from agehpo.nn.model import build_model
from agehpo.nn.train import evaluate, make_optimizer, resolve_device, train_epoch

PARAMS = {
    "num_fc_layers": 4,
    **{f"fc_output_feat_{i}": 32 for i in range(4)},
    **{f"fc_dropout_{i}": 0.0 for i in range(4)},
    "last_fc": 32,
    "optimizer": "Adam",
    "lr": 3e-3,
}


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


def test_one_epoch_reduces_the_loss_on_an_easy_set() -> None:
    torch.manual_seed(0)
    split = easy_split(2048)
    model = build_model(PARAMS, in_features=16)
    optimizer = make_optimizer("Adam", model.parameters(), 3e-3)
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


def test_evaluate_counts_all_three_heads() -> None:
    split = easy_split(64)
    model = build_model(PARAMS, in_features=16)
    metrics = evaluate(model, split, batch_size=10)
    assert (
        0.0
        <= metrics.all_accuracy
        <= min(metrics.age_accuracy, metrics.ethnicity_accuracy, metrics.gender_accuracy)
    )


@pytest.mark.parametrize("name", ["Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD"])
def test_every_seed_optimizer_steps(name: str) -> None:
    model = build_model(PARAMS, in_features=16)
    optimizer = make_optimizer(name, model.parameters(), 1e-3)
    before = [p.clone() for p in model.parameters()]
    train_epoch(model, optimizer, easy_split(64), batch_size=64)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_unknown_optimizer_and_device_are_named() -> None:
    with pytest.raises(ValueError, match="optimizer='Nadam' is not one of"):
        make_optimizer("Nadam", [], 1e-3)
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
