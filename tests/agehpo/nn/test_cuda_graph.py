"""The CUDA-graph train step matches the eager one. Runs only where CUDA is present."""

from __future__ import annotations

import threading

import pytest
import torch

from agehpo.data import TensorSplit
from agehpo.nn.model import build_model
from agehpo.nn.train import make_optimizer, train_epoch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PARAMS = {
    "num_fc_layers": 4,
    **{f"fc_output_feat_{i}": 32 for i in range(4)},
    **{f"fc_dropout_{i}": 0.0 for i in range(4)},  # no dropout: both paths see the same math
    "last_fc": 32,
}


def _split(device: str) -> TensorSplit:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=generator)
    return TensorSplit(
        x=x,
        age_bin=x[:, :5].argmax(1),
        ethnicity=x[:, 5:10].argmax(1),
        gender=(x[:, 10] > 0).long(),
    ).to(device)


@pytest.mark.parametrize("optimizer_name", ["Adam", "SGD", "RMSprop"])
def test_graph_step_matches_eager_step(optimizer_name: str) -> None:
    from agehpo.nn.cuda_graph import GraphTrainStep

    split = _split("cuda")
    torch.manual_seed(0)
    eager = build_model(PARAMS, 64).cuda()
    torch.manual_seed(0)
    graphed = build_model(PARAMS, 64).cuda()
    eager_optimizer = make_optimizer(optimizer_name, eager.parameters(), 1e-3)
    graph_optimizer = make_optimizer(optimizer_name, graphed.parameters(), 1e-3, capturable=True)
    step = GraphTrainStep(
        graphed, graph_optimizer, split, batch_size=64, capture_lock=threading.Lock()
    )
    for epoch in range(3):
        eager_loss = train_epoch(
            eager,
            eager_optimizer,
            split,
            batch_size=64,
            generator=torch.Generator(device="cuda").manual_seed(epoch),
        )
        graph_loss = step.epoch(torch.Generator(device="cuda").manual_seed(epoch))
        assert graph_loss == pytest.approx(eager_loss, rel=1e-4, abs=1e-5)
    for a, b in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
