"""Training and evaluation over tensors on the device; no per-batch host sync."""

from __future__ import annotations

import os
from collections.abc import Iterable
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
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda-graph`` -> a device; DeviceError
    for an unknown name, or a CUDA name on a machine without CUDA."""
    if name not in ("auto", "cpu", "cuda", "cuda-graph"):
        raise DeviceError(f"device={name!r} is not one of: auto, cpu, cuda, cuda-graph")
    cuda = name != "cpu" and torch.cuda.is_available()
    if name.startswith("cuda") and not cuda:
        raise DeviceError(
            f"device={name!r} needs CUDA, but torch sees no CUDA device; use auto or cpu"
        )
    return torch.device("cuda" if cuda else "cpu")


def configure_cpu_threads(device: torch.device) -> int:
    """One CPU intra-op thread unless ``AGEHPO_TORCH_THREADS`` says otherwise (tiny layers:
    OpenMP threads on busy cores made epochs 7x slower); returns the thread count."""
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("AGEHPO_TORCH_THREADS", "1")))
    return torch.get_num_threads()


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """One of :data:`agehpo.names.OPTIMIZERS`, ``capturable`` in a CUDA graph (not MADGRAD);
    ValueError for an unknown name, ImportError without madgrad."""
    if name == "MADGRAD":
        try:
            from madgrad import MADGRAD
        except ImportError as error:
            raise ImportError(
                "optimizer MADGRAD needs the madgrad package: pip install madgrad"
            ) from error
        return MADGRAD(parameters, lr=lr)
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not one of: {', '.join(OPTIMIZERS)}")
    options: dict[str, Any] = {"foreach": True, **({"capturable": True} if capturable else {})}
    if name == "SGD" or (name == "Adam" and not capturable):
        options = {"fused": True}  # one kernel updates all parameters: fewer launches per step
    return getattr(torch.optim, name)(parameters, lr=lr, **options)


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
    """One shuffled pass over ``split`` (on the model's device; the last batch may be smaller),
    updating ``model`` in place; the mean training loss (nan or inf if it diverged)."""
    model.train()
    device = split.x.device
    order = torch.randperm(len(split), generator=generator, device=device)
    loss_sum = torch.zeros((), device=device)
    for start in range(0, len(split), batch_size):
        batch = split.rows(order[start : start + batch_size])
        loss = multitask_loss(model(batch.x), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
    return float(loss_sum / len(split))


@torch.no_grad()
def evaluate(
    model: nn.Module, split: TensorSplit, *, batch_size: int = EVAL_BATCH_SIZE
) -> EpochMetrics:
    """The split's mean loss and the accuracies of each head, and of all three at once."""
    model.eval()
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros(4, device=split.x.device, dtype=torch.long)
    for start in range(0, len(split), batch_size):
        batch = split.rows(slice(start, start + batch_size))
        logits = model(batch.x)
        loss_sum += multitask_loss(logits, batch) * len(batch)
        ok = torch.stack(
            [a.argmax(1) == y for a, y in zip(logits, batch.tensors()[1:], strict=True)]
        )
        correct += torch.cat([ok, ok.all(0, keepdim=True)]).sum(1)
    n_rows = max(len(split), 1)
    return EpochMetrics(float(loss_sum) / n_rows, *(correct.double() / n_rows).tolist())


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE
) -> HeadLogits:
    """Softmax probabilities of each head, each of shape (rows, classes), for inputs ``x``."""
    model.eval()
    parts = [model(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    return HeadLogits(*(torch.cat(heads).softmax(1) for heads in zip(*parts, strict=True)))
