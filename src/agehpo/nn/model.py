"""AgeNet: the seed's multi-head fully connected network, built from a plain params dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

HEAD_SIZES = (5, 5, 2)  # age bins, ethnicities, genders


class HeadLogits(NamedTuple):
    """Unnormalised scores of the three heads for one batch."""

    age: torch.Tensor
    ethnicity: torch.Tensor
    gender: torch.Tensor


class UniformDropout(nn.Dropout):
    """Inverted dropout with its mask drawn from ``rand``: torch's CPU ``bernoulli_`` is not
    vectorised. Same distribution as :class:`torch.nn.Dropout`, one multiply in the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


class AgeNet(nn.Module):
    """Flatten, Linear-ReLU-Dropout per hidden layer, Linear(last_fc), three linear heads."""

    def __init__(
        self, in_features: int, hidden_sizes: list[int], dropouts: list[float], last_fc: int
    ) -> None:
        super().__init__()
        if len(hidden_sizes) != len(dropouts):
            raise ValueError(
                f"hidden_sizes and dropouts must have the same length, "
                f"got {len(hidden_sizes)} and {len(dropouts)}"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [in_features, *hidden_sizes]
        for i, dropout in enumerate(dropouts):
            layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU(), UniformDropout(dropout)]
        layers.append(nn.Linear(widths[-1], last_fc))
        self.body = nn.Sequential(*layers)
        # The three heads side by side in one Linear: one kernel instead of three.
        self.heads = nn.Linear(last_fc, sum(HEAD_SIZES))

    def forward(self, x: torch.Tensor) -> HeadLogits:
        """The head logits of a (batch, in_features) or (batch, 1, H, W) float tensor."""
        return HeadLogits(*self.heads(self.body(x)).split(HEAD_SIZES, dim=1))


def build_model(params: Mapping[str, Any], in_features: int) -> AgeNet:
    """The untrained AgeNet a trial's params describe (KeyError for a missing layer key)."""
    layers = range(int(params["num_fc_layers"]))
    return AgeNet(
        in_features,
        hidden_sizes=[int(params[f"fc_output_feat_{i}"]) for i in layers],
        dropouts=[float(params[f"fc_dropout_{i}"]) for i in layers],
        last_fc=int(params["last_fc"]),
    )


@dataclass(frozen=True)
class TrainedModel:
    """A finished trial's weights, kept on the CPU so the best one can be logged or tested."""

    params: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    in_features: int
