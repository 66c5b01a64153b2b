"""The train step captured once as a CUDA graph, then replayed (~7x). Static shapes: each
epoch drops its last partial batch. Captures are serialised by a lock (concurrent ones break
the dropout RNG bookkeeping); replays overlap on their own streams."""

from __future__ import annotations

import threading

import torch
from torch import nn

from agehpo.data import TensorSplit
from agehpo.names import OPTIMIZERS
from agehpo.nn.train import multitask_loss

WARMUP_STEPS = 3
# Optimizers whose torch implementation can run inside a graph (capturable=True).
CAPTURABLE_OPTIMIZERS = tuple(name for name in OPTIMIZERS if name != "MADGRAD")


class GraphTrainStep:
    """One trial's train step as a replayable CUDA graph; the optimizer is ``capturable=True``
    where torch has the flag, ``capture_lock`` is shared by all trials of the process."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        split: TensorSplit,
        *,
        batch_size: int,
        capture_lock: threading.Lock,
    ) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        device = split.x.device
        self.index = torch.arange(self.batch_size, device=device)
        self.graph = torch.cuda.CUDAGraph()
        model.train()
        initial = {name: value.clone() for name, value in model.state_dict().items()}

        def step() -> torch.Tensor:
            batch = split.rows(self.index)
            loss = multitask_loss(model(batch.x), batch)
            loss.backward()
            optimizer.step()
            return loss

        with capture_lock:
            # Warm up on a side stream so lazy allocations happen before capture.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    step()
            torch.cuda.current_stream(device).wait_stream(side)
            # Undo the warm-up in place (weights back, optimizer state zeroed), so the
            # captured pointers hold and warm-up steps do not count as training.
            model.load_state_dict(initial)  # copies in place
            with torch.no_grad():
                for state in optimizer.state.values():
                    for value in state.values():
                        if isinstance(value, torch.Tensor):
                            value.zero_()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.loss = step()

    def epoch(self, generator: torch.Generator | None = None) -> float:
        """Replay the step over one shuffled pass of full batches; the mean training loss."""
        n_rows, device = len(self.split), self.split.x.device
        n_batches = max(n_rows // self.batch_size, 1)
        order = torch.randperm(n_rows, generator=generator, device=device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n_batches * self.batch_size, self.batch_size):
            self.index.copy_(order[start : start + self.batch_size])
            self.graph.replay()
            loss_sum += self.loss.detach()
        return float(loss_sum / n_batches)
