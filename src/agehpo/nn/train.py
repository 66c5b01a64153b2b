"""Training and evaluation over preloaded tensors: pure PyTorch, no Optuna or MLflow.

Each batch gathers the rows of one slice of a shuffled permutation from tensors that
already sit on the device, so an epoch does no per-sample Python work. Sums are accumulated
on the device and read once per epoch, which keeps the CUDA path free of per-batch host
syncs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional

from agehpo.errors import UserError
from agehpo.names import ACCURACIES, OPTIMIZERS
from agehpo.nn.model import HeadLogits

if TYPE_CHECKING:
    from agehpo.data import TensorSplit

EVAL_BATCH_SIZE = 8192


class DeviceError(UserError, ValueError):
    """The device parameter names no device this machine has. One-line message."""


@dataclass(frozen=True)
class EpochMetrics:
    """What one evaluation pass measured. Accuracies are fractions in [0, 1]."""

    loss: float
    age_accuracy: float
    ethnicity_accuracy: float
    gender_accuracy: float
    all_accuracy: float

    def accuracies(self, prefix: str) -> dict[str, float]:
        """The four accuracies named as MLflow records them, e.g. ``test_age_accuracy``."""
        return {f"{prefix}{name}": getattr(self, name) for name in ACCURACIES}


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device parameter into a torch device.

    Args:
        name: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda-graph``.

    Returns:
        The device tensors and models go to.

    Raises:
        DeviceError: For an unknown name, or a CUDA name on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "cuda-graph"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={name!r} needs CUDA, but torch sees no CUDA device; use auto or cpu"
            )
        return torch.device("cuda")
    raise DeviceError(f"device={name!r} is not one of: auto, cpu, cuda, cuda-graph")


def configure_cpu_threads(device: torch.device) -> int:
    """Use one intra-op thread for CPU training unless ``AGEHPO_TORCH_THREADS`` says otherwise.

    The seed's layers are tiny (batch 128 x at most 576 x 64), so extra threads only add
    synchronisation; with workers or other processes on the cores, OpenMP's spinning threads
    made an epoch 7x slower here (6.0 s vs 0.87 s on 2 busy cores).

    Returns:
        The number of threads torch now uses.
    """
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("AGEHPO_TORCH_THREADS", "1")))
    return torch.get_num_threads()


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """Create one of the seed's optimizers.

    Args:
        name: One of Adam, Adadelta, RMSprop, SGD, MADGRAD.
        parameters: The model parameters to optimize.
        lr: Learning rate.
        capturable: Build it so its step can be captured in a CUDA graph (not MADGRAD).

    Returns:
        The optimizer.

    Raises:
        ValueError: For an unknown optimizer name.
        ImportError: For MADGRAD when the madgrad package is missing.
    """
    if name == "MADGRAD":
        try:
            from madgrad import MADGRAD
        except ImportError as error:
            raise ImportError(
                "optimizer MADGRAD needs the madgrad package: pip install madgrad"
            ) from error
        return MADGRAD(parameters, lr=lr)
    if name in ("Adam", "SGD"):
        # The fused kernels update all parameters in one call: fewer launches per step.
        optimizer_class: Callable[..., torch.optim.Optimizer] = getattr(torch.optim, name)
        if capturable and name == "Adam":
            return optimizer_class(parameters, lr=lr, capturable=True, foreach=True)
        return optimizer_class(parameters, lr=lr, fused=True)
    if name in ("Adadelta", "RMSprop"):
        optimizer_class = getattr(torch.optim, name)
        extra: dict[str, Any] = {"capturable": True} if capturable else {}
        return optimizer_class(parameters, lr=lr, foreach=True, **extra)
    raise ValueError(f"optimizer={name!r} is not one of: {', '.join(OPTIMIZERS)}")


def multitask_loss(logits: HeadLogits, batch: TensorSplit) -> torch.Tensor:
    """Sum of the three heads' cross-entropies against the labels of ``batch``."""
    return (
        functional.cross_entropy(logits.age, batch.age_bin)
        + functional.cross_entropy(logits.ethnicity, batch.ethnicity)
        + functional.cross_entropy(logits.gender, batch.gender)
    )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: TensorSplit,
    *,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
) -> float:
    """Run one shuffled pass over ``split``.

    Args:
        model: The network; its parameters are updated in place.
        optimizer: The optimizer over ``model``'s parameters.
        split: Preloaded training tensors on the model's device.
        batch_size: Rows per step; the last batch may be smaller.
        generator: Random generator on the split's device, for a reproducible order.

    Returns:
        The mean training loss over the epoch's samples (may be nan or inf if training
        diverged; the caller decides what that means).
    """
    model.train()
    n_rows = len(split)
    device = split.x.device
    order = torch.randperm(n_rows, generator=generator, device=device)
    loss_sum = torch.zeros((), device=device)
    for start in range(0, n_rows, batch_size):
        batch = split.rows(order[start : start + batch_size])
        loss = multitask_loss(model(batch.x), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
    return float(loss_sum / n_rows)


@torch.no_grad()
def evaluate(
    model: nn.Module, split: TensorSplit, *, batch_size: int = EVAL_BATCH_SIZE
) -> EpochMetrics:
    """Measure loss and the accuracies of each head, and of all three at once.

    Args:
        model: The network, switched to eval mode here.
        split: Preloaded tensors on the model's device.
        batch_size: Rows per forward pass; large, since nothing is stored for backward.

    Returns:
        The split's mean loss and accuracies.
    """
    model.eval()
    device = split.x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(4, device=device, dtype=torch.long)
    for start in range(0, len(split), batch_size):
        batch = split.rows(slice(start, start + batch_size))
        logits = model(batch.x)
        loss_sum += multitask_loss(logits, batch) * len(batch)
        age_ok = logits.age.argmax(1) == batch.age_bin
        ethnicity_ok = logits.ethnicity.argmax(1) == batch.ethnicity
        gender_ok = logits.gender.argmax(1) == batch.gender
        all_ok = age_ok & ethnicity_ok & gender_ok
        correct += torch.stack([age_ok.sum(), ethnicity_ok.sum(), gender_ok.sum(), all_ok.sum()])
    n_rows = max(len(split), 1)
    age, ethnicity, gender, all_heads = (correct.double() / n_rows).tolist()
    return EpochMetrics(float(loss_sum) / n_rows, age, ethnicity, gender, all_heads)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE
) -> HeadLogits:
    """Softmax probabilities of each head for preprocessed inputs.

    Args:
        model: The trained network.
        x: Preprocessed inputs on the model's device.
        batch_size: Rows per forward pass.

    Returns:
        Per-head probability tensors, each of shape (rows, classes).
    """
    model.eval()
    parts = [model(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    return HeadLogits(
        *(torch.cat([getattr(p, head) for p in parts]).softmax(1) for head in HeadLogits._fields)
    )
