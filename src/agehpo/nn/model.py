"""AgeNet: the seed's multi-head fully connected network, built from a plain params dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

N_AGE_BINS = 5
N_ETHNICITIES = 5
N_GENDERS = 2


class HeadLogits(NamedTuple):
    """Unnormalised scores of the three heads for one batch."""

    age: torch.Tensor
    ethnicity: torch.Tensor
    gender: torch.Tensor


class UniformDropout(nn.Dropout):
    """Inverted dropout with its mask drawn from ``rand`` instead of ``bernoulli_``.

    Same distribution as :class:`torch.nn.Dropout`; on the CPU torch's uniform sampler is
    vectorised and its Bernoulli one is not, which made masks a tenth of an epoch. The mask
    is built as a scaled float tensor with in-place ops outside autograd, so the graph holds
    one multiply per layer and no bool-to-float copy.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        scaled_keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * scaled_keep


class AgeNet(nn.Module):
    """Flatten, Linear-ReLU-Dropout per hidden layer, Linear(last_fc), three linear heads.

    Args:
        in_features: Number of input pixels (img_size ** 2).
        hidden_sizes: Output size of each hidden layer.
        dropouts: Dropout probability after each hidden layer.
        last_fc: Width of the shared representation the heads read.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: list[int],
        dropouts: list[float],
        last_fc: int,
    ) -> None:
        super().__init__()
        if len(hidden_sizes) != len(dropouts):
            raise ValueError(
                f"hidden_sizes and dropouts must have the same length, "
                f"got {len(hidden_sizes)} and {len(dropouts)}"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size, dropout in zip(hidden_sizes, dropouts, strict=True):
            layers += [nn.Linear(width, size), nn.ReLU(), UniformDropout(dropout)]
            width = size
        layers.append(nn.Linear(width, last_fc))
        self.body = nn.Sequential(*layers)
        # The three heads are independent linear maps of the same features; one Linear with
        # their outputs side by side computes exactly that in one kernel instead of three.
        self.heads = nn.Linear(last_fc, N_AGE_BINS + N_ETHNICITIES + N_GENDERS)

    def forward(self, x: torch.Tensor) -> HeadLogits:
        """Score a batch.

        Args:
            x: Float tensor of shape (batch, in_features) or (batch, 1, H, W).

        Returns:
            The logits of the age, ethnicity and gender heads.
        """
        age, ethnicity, gender = self.heads(self.body(x)).split(
            (N_AGE_BINS, N_ETHNICITIES, N_GENDERS), dim=1
        )
        return HeadLogits(age, ethnicity, gender)


def build_model(params: Mapping[str, Any], in_features: int) -> AgeNet:
    """Build the network a trial's params describe.

    Args:
        params: The search-space dict (``num_fc_layers``, ``fc_output_feat_{i}``,
            ``fc_dropout_{i}``, ``last_fc``; other keys are ignored).
        in_features: Number of input pixels.

    Returns:
        An untrained AgeNet.

    Raises:
        KeyError: If a layer's size or dropout is missing from ``params``.
    """
    n_layers = int(params["num_fc_layers"])
    return AgeNet(
        in_features,
        hidden_sizes=[int(params[f"fc_output_feat_{i}"]) for i in range(n_layers)],
        dropouts=[float(params[f"fc_dropout_{i}"]) for i in range(n_layers)],
        last_fc=int(params["last_fc"]),
    )


@dataclass(frozen=True)
class TrainedModel:
    """A finished trial's weights, kept on the CPU so the best one can be logged or tested."""

    params: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    in_features: int
