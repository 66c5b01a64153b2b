"""Adapter between Optuna and training: params -> epochs -> report/prune -> value, and hooks."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import optuna
import torch

from agehpo.config import StudyConfig
from agehpo.data import PreparedData, load_table, prepare
from agehpo.nn.cuda_graph import CAPTURABLE_OPTIMIZERS, GraphTrainStep
from agehpo.nn.model import TrainedModel, build_model
from agehpo.nn.train import (
    configure_cpu_threads,
    evaluate,
    make_optimizer,
    resolve_device,
    train_epoch,
)
from agehpo.search_space import suggest

_logger = logging.getLogger(__name__)
# Called after each epoch with the trial, the 1-based epoch and the names.EPOCH_METRICS metrics.
EpochHook = Callable[[optuna.trial.BaseTrial, int, Mapping[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became nan or inf. Fails the trial, not the study."""


class Objective:
    """Train the trial's network for ``n_epochs`` (unless pruned); its validation age accuracy.
    Trial ``k`` trains with ``seed + k``; ``cuda_graphs`` captures train steps (CUDA only,
    MADGRAD trains eagerly)."""

    def __init__(
        self,
        data: PreparedData,
        *,
        n_epochs: int,
        batch_size: int,
        device: torch.device,
        seed: int,
        epoch_hooks: Sequence[EpochHook] = (),
        cuda_graphs: bool = False,
    ) -> None:
        self.data, self.n_epochs, self.batch_size = data, n_epochs, batch_size
        self.device, self.seed = device, seed
        self.epoch_hooks = list(epoch_hooks)
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._finished: dict[int, TrainedModel] = {}
        self._lock = threading.Lock()
        self._capture_lock = threading.Lock()
        self._warned_eager: set[str] = set()

    @classmethod
    def for_config(cls, config: StudyConfig, data: PreparedData) -> Objective:
        """The objective a study with these parameters optimizes, on ``data``'s device."""
        return cls(
            data,
            n_epochs=config.n_epochs,
            batch_size=config.batch_size,
            device=data.train.x.device,
            seed=config.seed,
            cuda_graphs=config.device in ("auto", "cuda-graph"),
        )

    def __call__(
        self, trial: optuna.trial.BaseTrial, hooks: Sequence[EpochHook] | None = None
    ) -> float:
        # Each trial (thread, with n_jobs) gets its own CUDA stream so concurrent trials overlap.
        cuda = self.device.type == "cuda"
        with torch.cuda.stream(torch.cuda.Stream(self.device)) if cuda else nullcontext():
            return self._train(trial, self.epoch_hooks if hooks is None else hooks)

    def retrain(self, params: dict[str, Any], number: int) -> TrainedModel | None:
        """Train a finished trial's params again with its seed; None if it diverged."""
        try:
            self(optuna.trial.FixedTrial(params, number=number), hooks=())
        except NonFiniteLossError:
            return None
        return self.pop_model(number)

    def pop_model(self, trial_number: int) -> TrainedModel | None:
        """Hand over (and forget) a trial's weights; None if it did not complete here."""
        with self._lock:
            return self._finished.pop(trial_number, None)

    def _epoch_runner(
        self, model: torch.nn.Module, params: dict[str, Any]
    ) -> Callable[[torch.Generator], float]:
        name, lr, train = params["optimizer"], params["lr"], self.data.train
        if self.cuda_graphs and name in CAPTURABLE_OPTIMIZERS:
            optimizer = make_optimizer(name, model.parameters(), lr, capturable=True)
            lock = self._capture_lock
            return GraphTrainStep(
                model, optimizer, train, batch_size=self.batch_size, capture_lock=lock
            ).epoch
        if self.cuda_graphs and name not in self._warned_eager:
            self._warned_eager.add(name)
            _logger.warning("%s cannot be captured in a CUDA graph; training it eagerly", name)
        optimizer = make_optimizer(name, model.parameters(), lr)
        return lambda generator: train_epoch(
            model, optimizer, train, batch_size=self.batch_size, generator=generator
        )

    def _train(self, trial: optuna.trial.BaseTrial, hooks: Sequence[EpochHook]) -> float:
        params = suggest(trial)
        torch.manual_seed(self.seed + trial.number)
        in_features = self.data.train.x.shape[1]
        model = build_model(params, in_features).to(self.device)
        run_epoch = self._epoch_runner(model, params)
        generator = torch.Generator(device=self.device).manual_seed(self.seed + trial.number)
        val_age_accuracy = 0.0
        for epoch in range(1, self.n_epochs + 1):
            train_loss = run_epoch(generator)
            val = evaluate(model, self.data.val)
            if not (math.isfinite(train_loss) and math.isfinite(val.loss)):
                raise NonFiniteLossError(
                    f"loss is not finite at epoch {epoch} (train_loss={train_loss}, "
                    f"val_loss={val.loss}): {params['optimizer']} at lr={params['lr']:.3g} diverged"
                )
            metrics = {"train_loss": train_loss, "val_loss": val.loss, **val.accuracies("val_")}
            for hook in hooks:
                hook(trial, epoch, metrics)
            val_age_accuracy = val.age_accuracy
            trial.report(val_age_accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        state_dict = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        with self._lock:
            self._finished[trial.number] = TrainedModel(params, state_dict, in_features)
        return val_age_accuracy


def load_data(config: StudyConfig) -> PreparedData:
    """Load, split and preprocess the configured data once, on the configured device."""
    table = load_table(config.data, n_samples=config.n_samples, seed=config.seed)
    prepared = prepare(table, img_size=config.img_size)
    device = resolve_device(config.device)
    configure_cpu_threads(device)
    splits = {name: getattr(prepared, name).to(device) for name in ("train", "val", "test")}
    return dataclasses.replace(prepared, **splits)
